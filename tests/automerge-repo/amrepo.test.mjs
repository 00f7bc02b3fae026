// An unmodified automerge-repo 2.5.6 client against a real gridcase server (run.sh starts it
// with demo data and registers one case from a phone): entitled and unentitled reads, the
// personal-data document by role, a phone's change arriving live, a refused write, a bad token.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { caseUrl, connect } from "./client.mjs";

const run = promisify(execFile);
const env = name => {
    const value = process.env[name];
    assert.ok(value, `${name} is set by run.sh`);
    return value;
};
const BASE = env("GRIDCASE_URL");
const CASE = env("GRIDCASE_CASE");
const TITLE = env("GRIDCASE_TITLE");
const TOKENS = JSON.parse(env("GRIDCASE_TOKENS"));
const PHONE = JSON.parse(env("GRIDCASE_PHONE")); // argv prefix of gridcase-phone for grid-101

/** A scalar string as Automerge 3 reads it (an ImmutableString) as a plain string. */
const plain = v => (v && typeof v === "object" && "val" in v ? v.val : v);

const repos = [];
const repoOf = user => {
    const repo = connect(BASE, TOKENS[user]);
    repos.push(repo);
    return repo;
};
after(async () => {
    await Promise.all(repos.map(r => r.shutdown()));
    // automerge-repo's WebSocket adapter may keep a reconnect timer.
    setTimeout(() => process.exit(process.exitCode ?? 0), 100).unref();
});

/** Resolves with the handle's doc once `ok(doc)` holds, or rejects after `ms`. */
function until(handle, ok, ms, what) {
    return new Promise((resolve, reject) => {
        const check = () => {
            const doc = handle.doc();
            if (doc && ok(doc)) {
                clearTimeout(timer);
                handle.off("change", check);
                resolve(doc);
            }
        };
        const timer = setTimeout(() => {
            handle.off("change", check);
            reject(new Error(`timed out waiting for ${what}`));
        }, ms);
        handle.on("change", check);
        check();
    });
}

async function unavailable(repo, url) {
    await assert.rejects(repo.find(url), /unavailable/, `${url} must be unavailable`);
}

test("an entitled township worker finds the case and its personal data", async () => {
    const repo = repoOf("town-101");
    const handle = await repo.find(caseUrl(CASE));
    assert.equal(plain(handle.doc().title), TITLE);
    const pii = await repo.find(caseUrl(CASE + "#pii"));
    assert.equal(plain(pii.doc().name), "王建国");
});

test("another township's worker gets doc-unavailable, as for a missing case", async () => {
    const repo = repoOf("town-102");
    await unavailable(repo, caseUrl(CASE));
    await unavailable(repo, caseUrl(CASE + "#pii"));
    await unavailable(repoOf("town-101"), caseUrl("no-such-case"));
});

test("a handling unit sees the case but not the personal data", async () => {
    const repo = repoOf("unit-water");
    const handle = await repo.find(caseUrl(CASE));
    assert.equal(plain(handle.doc().title), TITLE);
    await unavailable(repo, caseUrl(CASE + "#pii"));
});

test("a phone's change arrives live", async () => {
    const handle = await repoOf("town-101").find(caseUrl(CASE));
    const text = "live note " + Date.now();
    await run(PHONE[0], [...PHONE.slice(1), "note", CASE, text]);
    await run(PHONE[0], [...PHONE.slice(1), "sync"]);
    const doc = await until(handle, d => (d.notes ?? []).some(n => plain(n.text) === text), 20_000, "the note");
    assert.ok(doc.notes.length >= 1);
});

test("a written change never reaches the server, and the exchange goes quiet", async () => {
    const repo = repoOf("town-101");
    const handle = await repo.find(caseUrl(CASE));
    const notices = [];
    handle.on("ephemeral-message", ({ message }) => notices.push(message));
    const sent = [];
    const adapter = repo.networkSubsystem.adapters[0];
    const send = adapter.send.bind(adapter);
    adapter.send = message => {
        sent.push(message);
        send(message);
    };
    handle.change(d => {
        d.title = "changed from the web";
    });
    // The server's sync messages say it is read-only: Automerge 3.5 then sends no change
    // (a client that sends one anyway gets a "gridcase-refused" notice; Rust tests cover it).
    await new Promise(r => setTimeout(r, 3_000));
    assert.ok(sent.length <= 4, `no retry loop: the client sent ${sent.length} messages`);
    for (const notice of notices) assert.equal(notice.type, "gridcase-refused");
    assert.equal(plain(handle.doc().title), "changed from the web", "the local change stays local");
    // A fresh client (another connection) still reads the server's title.
    const fresh = await repoOf("hotline").find(caseUrl(CASE));
    assert.equal(plain(fresh.doc().title), TITLE);
});

test("a bad token gets nothing and the client process exits by itself", async () => {
    const { stdout } = await run(process.execPath, ["bad-token.mjs", BASE, "not-a-token", CASE], {
        timeout: 30_000,
    });
    assert.equal(stdout.trim(), "UNAVAILABLE");
});
