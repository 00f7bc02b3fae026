// Run as its own process: a client with a bad token must get no document and exit by itself
// (automerge-repo 2.5's Node client crashes the process when an upgrade is refused).
import { caseUrl, connect } from "./client.mjs";

const [base, token, caseId] = process.argv.slice(2);
const repo = connect(base, token);
try {
    await repo.find(caseUrl(caseId));
    console.log("FOUND");
} catch (e) {
    console.log(/unavailable/.test(String(e)) ? "UNAVAILABLE" : "ERROR " + e);
}
await repo.shutdown();
// The adapter keeps a reconnect timer after a server-side close; nothing else is pending.
process.exit(0);
