// Prints isbot's verdict (1 bot, 0 not) for every line of the files named,
// in order, skipping blank lines and '#' comments as fraudgate's test does.
const { isbot } = require("isbot");
const fs = require("fs");
const out = [];
for (const f of process.argv.slice(2)) {
  for (const line of fs.readFileSync(f, "utf8").split("\n")) {
    if (line.startsWith("#") || !line.trim()) continue;
    out.push(isbot(line) ? "1" : "0");
  }
}
process.stdout.write(out.join("\n") + "\n");
