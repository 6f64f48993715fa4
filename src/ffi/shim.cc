// The two things rocksnap needs from RocksDB that its C API does not offer:
// building the file list for column family import, and reading every entry of
// an SST with its sequence number. Called only from src/ffi/mod.rs.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "rocksdb/metadata.h"
#include "rocksdb/options.h"
#include "rocksdb/sst_file_reader.h"
#include "rocksdb/table_properties.h"
#include "rocksdb/types.h"

// Identical to the definition in RocksDB's db/c.cc, which the C API's
// rocksdb_livefiles_* and rocksdb_export_import_files_metadata_set_files use.
struct rocksdb_livefiles_t {
  std::vector<rocksdb::LiveFileMetaData> rep;
};

namespace {
char* copy_error(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

char* copy_bytes(const rocksdb::Slice& s) {
  char* out = static_cast<char*>(std::malloc(s.size() == 0 ? 1 : s.size()));
  if (out != nullptr && s.size() > 0) std::memcpy(out, s.data(), s.size());
  return out;
}
}  // namespace

extern "C" {

// Appends one file to a list made by rocksdb_livefiles_create().
void rocksnap_livefiles_push(rocksdb_livefiles_t* files, const char* cf_name,
                             const char* name, const char* directory,
                             int level, uint64_t size, const char* smallest,
                             size_t smallest_len, const char* largest,
                             size_t largest_len, uint64_t smallest_seqno,
                             uint64_t largest_seqno) {
  rocksdb::LiveFileMetaData m;
  m.column_family_name = cf_name;
  m.name = name;
  m.relative_filename = (name[0] == '/') ? std::string(name + 1) : std::string(name);
  m.db_path = directory;
  m.directory = directory;
  m.level = level;
  m.size = size;
  m.smallestkey.assign(smallest, smallest_len);
  m.largestkey.assign(largest, largest_len);
  m.smallest_seqno = smallest_seqno;
  m.largest_seqno = largest_seqno;
  files->rep.push_back(std::move(m));
}

// What a full read of one SST found.
struct rocksnap_sst_summary {
  char* smallest_key;  // malloc'd; free with free()
  size_t smallest_len;
  char* largest_key;  // malloc'd; free with free()
  size_t largest_len;
  uint64_t smallest_seqno;
  uint64_t largest_seqno;
  uint64_t entries;
  uint64_t range_deletions;
};

// Verifies every block checksum of the SST at `path`, then reads every point
// entry (deletions included). Returns NULL on success, else a malloc'd message.
char* rocksnap_sst_scan(const char* path, rocksnap_sst_summary* out) {
  std::memset(out, 0, sizeof(*out));
  rocksdb::Options options;
  rocksdb::SstFileReader reader(options);
  rocksdb::Status s = reader.Open(path);
  if (!s.ok()) return copy_error(s.ToString());
  s = reader.VerifyChecksum();
  if (!s.ok()) return copy_error(s.ToString());
  auto props = reader.GetTableProperties();
  out->range_deletions = props ? props->num_range_deletions : 0;
  std::unique_ptr<rocksdb::Iterator> it = reader.NewTableIterator();
  bool first = true;
  std::string last_key;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    rocksdb::ParsedEntryInfo entry;
    s = reader.ParseTableIteratorKey(it->key(), &entry);
    if (!s.ok()) return copy_error(s.ToString());
    if (first) {
      out->smallest_key = copy_bytes(entry.user_key);
      out->smallest_len = entry.user_key.size();
      out->smallest_seqno = entry.sequence;
      out->largest_seqno = entry.sequence;
      first = false;
    }
    if (entry.sequence < out->smallest_seqno) out->smallest_seqno = entry.sequence;
    if (entry.sequence > out->largest_seqno) out->largest_seqno = entry.sequence;
    last_key.assign(entry.user_key.data(), entry.user_key.size());
    out->entries++;
  }
  if (!it->status().ok()) {
    std::free(out->smallest_key);
    out->smallest_key = nullptr;
    return copy_error(it->status().ToString());
  }
  out->largest_key = copy_bytes(rocksdb::Slice(last_key));
  out->largest_len = last_key.size();
  return nullptr;
}

// Reads the identity RocksDB gives an SST: the id of the database session
// that wrote it and its original file number, from its table properties.
// Returns NULL on success (with *session malloc'd), else a malloc'd message.
char* rocksnap_sst_identity(const char* path, char** session,
                            uint64_t* file_number) {
  *session = nullptr;
  rocksdb::Options options;
  rocksdb::SstFileReader reader(options);
  rocksdb::Status s = reader.Open(path);
  if (!s.ok()) return copy_error(s.ToString());
  auto props = reader.GetTableProperties();
  if (!props || props->db_session_id.empty()) {
    return copy_error("the file has no session id in its properties");
  }
  *session = copy_error(props->db_session_id);
  *file_number = props->orig_file_number;
  return nullptr;
}

// Reads the range of sequence numbers an SST's keys carry, from its table
// properties (RocksDB writes them since 9.x). *known is 0 when the file does
// not record them. Returns NULL on success, else a malloc'd message.
char* rocksnap_sst_seqnos(const char* path, uint64_t* smallest,
                          uint64_t* largest, int* known) {
  *known = 0;
  rocksdb::Options options;
  rocksdb::SstFileReader reader(options);
  rocksdb::Status s = reader.Open(path);
  if (!s.ok()) return copy_error(s.ToString());
  auto props = reader.GetTableProperties();
  if (props && props->HasKeySmallestSeqno() && props->HasKeyLargestSeqno()) {
    *smallest = props->key_smallest_seqno;
    *largest = props->key_largest_seqno;
    *known = 1;
  }
  return nullptr;
}

}  // extern "C"
