// A Restate service for rocksnap's tests: a keyed counter whose state lives
// in Restate's partition store. Listens on a free port and prints
// "PORT <n>" once it does; exits when its standard input closes.
// The SDK uses Promise.withResolvers (Node.js 22); the machine's Node.js
// 20 lacks it.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}
const restate = require("@restatedev/restate-sdk");

const counter = restate.object({
  name: "counter",
  handlers: {
    add: async (ctx, amount) => {
      const count = ((await ctx.get("count")) ?? 0) + amount;
      ctx.set("count", count);
      return count;
    },
  },
});

restate
  .endpoint()
  .bind(counter)
  .listen(0)
  .then((port) => console.log(`PORT ${port}`));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
