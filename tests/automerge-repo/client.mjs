// What a web page needs to open a gridcase case with automerge-repo (the README shows this):
// a Repo with the WebSocket adapter pointed at /v1/automerge-repo with a device token, and the
// document's Automerge URL, `automerge:` + base58check of the UTF-8 document id.
import { Repo, stringifyAutomergeUrl } from "@automerge/automerge-repo";
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket";

/** The Automerge URL of a gridcase document: a case id, or `<case id>#pii`. */
export function caseUrl(docId) {
    return stringifyAutomergeUrl({ documentId: new TextEncoder().encode(docId) });
}

/** A repo connected to the gridcase server at `base` (http://host:port) with `token`. */
export function connect(base, token) {
    const ws = base.replace(/^http/, "ws") + "/v1/automerge-repo?token=" + encodeURIComponent(token);
    return new Repo({ network: [new WebSocketClientAdapter(ws)] });
}
