"""End-to-end tests of the generated Python API against a real gridcase-server.

Run through bindings/tests/run-python.sh, which starts the server, enrols the devices and puts the
generated module with the native library on PYTHONPATH. Plain unittest; pytest also collects it.
"""

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import gridcase_bindings as g

URL = os.environ.get("GRIDCASE_URL", "")
TOKEN_A = os.environ.get("GRIDCASE_TOKEN_A", "")
TOKEN_B = os.environ.get("GRIDCASE_TOKEN_B", "")
TOKEN_C = os.environ.get("GRIDCASE_TOKEN_C", "")
TOKEN_REVOKED = os.environ.get("GRIDCASE_TOKEN_REVOKED", "")
SERVER_BIN = os.environ.get("GRIDCASE_SERVER_BIN", "")
UNKNOWN_TOKEN = "0123456789abcdef0123456789abcdef.not-the-secret-at-all"
# Each store's key, as an app keeps it in the platform keystore: 32 random bytes.
KEYS = {}


def new_case(title, description, area="330604101201"):
    return g.NewCaseRecord(
        number="",
        channel=g.Channel.GRID,
        case_type=g.CaseType.COMPLAINT,
        category="market_supervision",
        urgency=g.Urgency.GENERAL,
        priority=False,
        title=title,
        description=description,
        location=g.LocationRecord(address="菜市场东门", area_code=area, gps=None),
    )


class Recorder(g.SyncListener):
    def __init__(self):
        self.events = []

    def on_progress(self, progress):
        self.events.append(progress)


def sync(phone, listener=None):
    return asyncio.run(phone.sync(listener))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnServer:
    """A gridcase-server of the test's own, to stop and start again."""

    def __init__(self, workdir):
        self.data = os.path.join(workdir, "own-server")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.cli("enrol-user", "--user", "sun", "--role", "grid_worker", "--area", "330604101")
        self.token = self.cli("enrol-device", "--user", "sun").strip().splitlines()[-1]

    def cli(self, *args):
        cmd = [SERVER_BIN, args[0], "--data", self.data, *args[1:]]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    def start(self):
        self.proc = subprocess.Popen(
            [SERVER_BIN, "serve", "--listen", f"127.0.0.1:{self.port}", "--data", self.data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("own gridcase-server did not start")

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None


@unittest.skipUnless(URL and TOKEN_A, "run through bindings/tests/run-python.sh")
class BindingsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="gridcase-py-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def open(self, name, token, url=None, key=None):
        key = key if key is not None else KEYS.setdefault(name, os.urandom(32))
        return g.GridcasePhone.open(os.path.join(self.dir, name), url or URL, token, key)

    def ids(self, phone, case_list, offset=0, limit=50):
        return [c.case_id for c in phone.list_cases(case_list, offset, limit).cases]

    def assert_error(self, variant, fn, *args):
        with self.assertRaises(variant) as ctx:
            fn(*args)
        self.assertIsInstance(ctx.exception, g.GridcaseError)
        self.assertTrue(str(ctx.exception).strip(), "the error carries a readable message")
        return ctx.exception

    # ----- the surface -----

    def test_offline_case_sync_and_second_phone(self):
        a = self.open("a.db", TOKEN_A)
        b = self.open("b.db", TOKEN_B)
        self.assert_error(g.GridcaseError.NotAllowed, a.create_case, new_case("x", "y"), None)
        sync(a)
        sync(b)
        self.assertEqual(a.identity().user, "wang")

        case = a.create_case(
            new_case("菜市场缺斤少两", "顾客反映东门摊位秤不准。"),
            g.ComplainantRecord(name="李四", phone="13900001111", anonymous=False),
        )
        self.assertEqual(case.status, g.Status.DRAFT)
        self.assertEqual(a.act(case.id, g.Action.REGISTER()).status, g.Status.REGISTERED)
        a.edit(case.id, g.CaseEdit.CATEGORY(value="weights_and_measures"))
        a.edit(case.id, g.CaseEdit.PRIORITY(value=True))
        a.add_note(case.id, "已告知市场管理处")
        a.add_attachment(case.id, g.AttachmentRef(sha256="cd" * 32, mime="image/jpeg", size=2048, caption="秤"))
        a.act(case.id, g.Action.START())
        full = a.get_case(case.id)
        self.assertEqual(full.status, g.Status.IN_PROGRESS)
        self.assertEqual(full.category, "weights_and_measures")
        self.assertTrue(full.priority)
        self.assertEqual(full.masked_phone, "139****1111")
        # Revealing the number returns it and is recorded for the audit log (a pending change).
        self.assertEqual(a.reveal_complainant_phone(case.id), "13900001111")
        self.assert_error(g.GridcaseError.NotFound, a.reveal_complainant_phone, "no-such-case")
        self.assertEqual(len(full.notes), 1)
        self.assertEqual(len(full.attachments), 1)
        self.assertEqual([e.action for e in full.timeline], [g.Action.REGISTER(), g.Action.START()])
        self.assertGreater(a.sync_status().pending_changes, 0)

        self.assertIn(case.id, self.ids(a, g.CaseList.MINE()))
        self.assertIn(case.id, self.ids(a, g.CaseList.SEARCH(text="缺斤")))
        self.assertIn(case.id, self.ids(a, g.CaseList.STATUS(status=g.Status.IN_PROGRESS)))
        self.assertEqual(self.ids(a, g.CaseList.STATUS(status=g.Status.CLOSED)), [])
        self.assertNotIn(case.id, self.ids(a, g.CaseList.OVERDUE()))
        self.assertIsInstance(self.ids(a, g.CaseList.DUE_SOON()), list)
        mine = self.ids(a, g.CaseList.MINE(), limit=1000)
        self.assertEqual(a.count_cases(g.CaseList.MINE()), len(mine))
        first = a.list_cases(g.CaseList.ALL(), 0, 1)
        total = a.count_cases(g.CaseList.ALL())
        self.assertEqual(len(first.cases), 1)
        self.assertEqual(first.next_offset, 1 if total > 1 else None)
        self.assertEqual(a.list_cases(g.CaseList.ALL(), total, 10).cases, [])
        dl = a.deadline(case.id)
        self.assertIsNotNone(dl)
        self.assertEqual(dl.stage, g.Stage.HANDLE)
        self.assertGreater(dl.due_at, dl.started_at)
        self.assertGreater(dl.remaining_ms, 0)
        self.assertEqual(dl.state, g.DeadlineState.ON_TIME)

        rec = Recorder()
        summary = sync(a, rec)
        self.assertTrue(rec.events, "progress events were received")
        self.assertTrue(any(e.cases_sent > 0 and e.bytes_sent > 0 for e in rec.events))
        self.assertEqual(rec.events[-1].phase, g.SyncPhase.DONE)
        self.assertGreater(rec.events[-1].bytes_received, 0)
        self.assertEqual(summary.rejected, [])
        status = a.sync_status()
        self.assertEqual(status.pending_changes, 0)
        self.assertIsNotNone(status.last_sync_at)
        self.assertIsNone(status.last_error)

        rec_b = Recorder()
        sync(b, rec_b)
        self.assertTrue(any(e.cases_received > 0 for e in rec_b.events))
        seen = b.get_case(case.id)
        self.assertEqual(seen.status, g.Status.IN_PROGRESS)
        self.assertEqual(seen.description, "顾客反映东门摊位秤不准。")

        # Concurrent offline edits of the description merge.
        a.set_description(case.id, "【王】" + seen.description)
        b.splice_description(case.id, len(seen.description), 0, "【李补充】")
        sync(a)
        sync(b)
        sync(a)
        merged = a.get_case(case.id).description
        self.assertEqual(merged, b.get_case(case.id).description)
        self.assertIn("【王】", merged)
        self.assertIn("【李补充】", merged)
        self.assertIn("秤不准", merged)

    def test_cancelled_sync_keeps_the_store_consistent(self):
        a = self.open("a.db", TOKEN_A)
        sync(a)
        case = a.create_case(new_case("取消测试", "内容"), None)

        class Canceller(g.SyncListener):
            def on_progress(self, progress):
                a.cancel_sync()

        self.assert_error(g.GridcaseError.Cancelled, sync, a, Canceller())
        self.assertEqual(a.get_case(case.id).title, "取消测试")
        self.assertGreater(a.sync_status().pending_changes, 0)
        sync(a)
        self.assertEqual(a.sync_status().pending_changes, 0)
        b = self.open("b.db", TOKEN_B)
        sync(b)
        self.assertEqual(b.get_case(case.id).title, "取消测试")

    def test_a_listener_that_raises_does_not_break_the_sync(self):
        a = self.open("a.db", TOKEN_A)

        class Broken(g.SyncListener):
            def on_progress(self, progress):
                raise RuntimeError("UI bug")

        sync(a, Broken())
        self.assertIsNotNone(a.sync_status().last_sync_at)

    def test_rejected_changes_are_reported_and_can_be_discarded(self):
        c = self.open("c.db", TOKEN_C)  # zhao: township 330604102
        sync(c)
        case = c.create_case(new_case("越界", "不在本镇", area="330604101201"), None)
        summary = sync(c)
        self.assertEqual([r.case_id for r in summary.rejected], [case.id])
        rejected = c.rejected_changes()
        self.assertEqual(len(rejected), 1)
        self.assertEqual(rejected[0].case_id, case.id)
        self.assertFalse(rejected[0].personal_data)
        self.assertEqual(rejected[0].code, "out_of_jurisdiction")
        self.assertTrue(rejected[0].message)
        self.assertEqual(c.sync_status().rejected, rejected)
        c.discard_local_changes(rejected[0].doc_id)
        self.assertEqual(c.rejected_changes(), [])
        self.assertEqual(c.sync_status().pending_changes, 0)
        self.assert_error(g.GridcaseError.NotFound, c.get_case, case.id)

    def test_deadline_rules_can_be_replaced(self):
        a = self.open("a.db", TOKEN_A)
        sync(a)
        case = a.create_case(new_case("时限测试", "内容"), None)
        a.act(case.id, g.Action.REGISTER())
        self.assertEqual(a.deadline(case.id).limit_unit, "working_days")
        a.set_deadline_rules(
            'due_soon_fraction = 0.8\nworking_day_close = "17:30"\n'
            '[[rule]]\nstage = "route"\namount = 90\nunit = "minutes"\n',
            None,
        )
        dl = a.deadline(case.id)
        self.assertEqual((dl.limit_amount, dl.limit_unit), (90, "minutes"))
        self.assertEqual(dl.due_at - dl.started_at, 90 * 60_000)
        registered = a.list_cases(g.CaseList.STATUS(status=g.Status.REGISTERED), 0, 50).cases
        summary = [c for c in registered if c.case_id == case.id][0]
        self.assertEqual(summary.due_at, dl.due_at)
        self.assertEqual(summary.stage, g.Stage.ROUTE)
        self.assert_error(g.GridcaseError.InvalidInput, a.set_deadline_rules, "[[rule]]\nstage = 'nope'\n", None)
        self.assert_error(g.GridcaseError.InvalidInput, a.set_deadline_rules, "", "garbage calendar line")

    # ----- error paths -----

    def test_wrong_token_is_unauthorized(self):
        phone = self.open("stranger.db", UNKNOWN_TOKEN)
        self.assert_error(g.GridcaseError.Unauthorized, sync, phone)
        self.assertIsNotNone(phone.sync_status().last_error)

    def test_malformed_token_is_unauthorized(self):
        self.assert_error(g.GridcaseError.Unauthorized, self.open, "bad.db", "not-a-token")

    def test_revoked_device_is_wiped(self):
        phone = self.open("revoked.db", TOKEN_REVOKED)
        self.assert_error(g.GridcaseError.Revoked, sync, phone)
        self.assert_error(g.GridcaseError.Revoked, phone.count_cases, g.CaseList.ALL())
        self.assert_error(g.GridcaseError.Revoked, phone.sync_status)

    def test_plain_http_to_another_machine_is_refused(self):
        for url in ["http://cases.example.gov.cn", "http://10.0.0.2:8080", "ftp://x"]:
            self.assert_error(g.GridcaseError.InvalidInput, lambda: self.open("plain.db", TOKEN_A, url=url))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "plain.db")), "nothing opened")
        self.open("local.db", TOKEN_A, url="http://localhost:1/")

    def test_store_of_another_device_is_refused(self):
        self.open("a.db", TOKEN_A)
        self.assert_error(g.GridcaseError.InvalidInput, self.open, "a.db", TOKEN_B)

    def test_a_file_the_key_does_not_open_is_a_wrong_key_error(self):
        # An encrypted store is indistinguishable from noise without its key: a corrupt file
        # and a wrong key are the same error, and neither changes the file.
        path = os.path.join(self.dir, "corrupt.db")
        garbage = b"this is not a SQLite database, just garbage " * 200
        with open(path, "wb") as f:
            f.write(garbage)
        self.assert_error(g.GridcaseError.WrongKey, g.GridcasePhone.open, path, URL, TOKEN_A, os.urandom(32))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), garbage)

    def test_a_wrong_key_is_refused_and_the_right_one_opens(self):
        a = self.open("keyed.db", TOKEN_A)
        sync(a)
        case = a.create_case(new_case("加密", "内容"), g.ComplainantRecord(name="赵六", phone="13700001111", anonymous=False))
        del a
        self.assert_error(g.GridcaseError.WrongKey, self.open, "keyed.db", TOKEN_A, None, os.urandom(32))
        self.assert_error(g.GridcaseError.InvalidInput, self.open, "short.db", TOKEN_A, None, b"too short")
        again = self.open("keyed.db", TOKEN_A)
        self.assertEqual(again.get_case(case.id).complainant.name, "赵六")
        for name in os.listdir(self.dir):
            with open(os.path.join(self.dir, name), "rb") as f:
                raw = f.read()
            self.assertNotIn("赵六".encode(), raw, name)
            self.assertNotIn(b"13700001111", raw, name)

    def test_listeners_hear_edits_and_sync_pages(self):
        a = self.open("heard.db", TOKEN_A)
        sync(a)
        heard = []

        class Listener(g.CaseChangeListener):
            def on_cases_changed(self, changes):
                heard.append(changes)

        listener_id = a.add_change_listener(Listener())
        case = a.create_case(new_case("监听", "内容"), None)
        self.assertEqual(heard[-1].source, g.ChangeSource.LOCAL)
        self.assertEqual(heard[-1].updated, [case.id])
        sync(a)
        self.assertEqual(heard[-1].source, g.ChangeSource.SYNC)
        self.assertIn(case.id, heard[-1].acknowledged)
        self.assertTrue(a.remove_change_listener(listener_id))
        a.add_note(case.id, "无人监听")
        self.assertEqual(len(heard), 2)
        self.assertEqual(g.china_time(0), "1970-01-01 08:00")

    def test_unreachable_server_is_a_network_error(self):
        phone = self.open("down.db", TOKEN_A, url=f"http://127.0.0.1:{free_port()}")
        self.assert_error(g.GridcaseError.Network, sync, phone)
        self.assertIn("network", phone.sync_status().last_error)

    @unittest.skipUnless(SERVER_BIN, "needs GRIDCASE_SERVER_BIN")
    def test_stopped_server_is_a_network_error_and_the_next_sync_recovers(self):
        server = OwnServer(self.dir)
        try:
            server.start()
            phone = self.open("own.db", server.token, url=server.url)
            sync(phone)
            case = phone.create_case(new_case("停机测试", "服务器停了"), None)
            server.stop()
            self.assert_error(g.GridcaseError.Network, sync, phone)
            status = phone.sync_status()
            self.assertGreater(status.pending_changes, 0)
            self.assertIsNotNone(status.last_error)
            self.assertEqual(phone.get_case(case.id).title, "停机测试")
            server.start()
            sync(phone)
            status = phone.sync_status()
            self.assertEqual(status.pending_changes, 0)
            self.assertIsNone(status.last_error)
        finally:
            server.stop()

    def test_a_photo_attached_offline_reaches_a_second_phone_byte_identical(self):
        a = self.open("photo-a.db", TOKEN_A)
        b = self.open("photo-b.db", TOKEN_B)
        sync(a)
        sync(b)
        case = a.create_case(new_case("路灯倒伏", "村口路灯被风吹倒。"), None)
        a.act(case.id, g.Action.REGISTER())
        # JPEG magic, then random bytes: a ~300 KB photo.
        photo = bytes([0xFF, 0xD8, 0xFF, 0xE0]) + os.urandom(300_000)
        path = os.path.join(self.dir, "photo.jpg")
        with open(path, "wb") as f:
            f.write(photo)
        a.attach_file(case.id, path, "image/jpeg", "现场照片", False)
        listed = a.attachments(case.id)
        self.assertEqual(len(listed), 1)
        self.assertTrue(listed[0].state.is_local())
        self.assertEqual(listed[0].attachment.size, len(photo))
        self.assertEqual(a.open_attachment(case.id, listed[0].attachment.sha256), photo)
        self.assert_error(g.GridcaseError.InvalidInput, a.attach_bytes, case.id, b"", "image/jpeg", "", False)
        self.assert_error(g.GridcaseError.InvalidInput, a.attach_file, case.id, path + ".missing", "image/jpeg", "", False)

        rec = Recorder()
        summary = sync(a, rec)
        sha = listed[0].attachment.sha256
        self.assertEqual(summary.uploaded, [sha])
        self.assertTrue(any(e.phase == g.SyncPhase.UPLOADING for e in rec.events))
        self.assertEqual(rec.events[-1].blob_bytes_sent, len(photo))
        self.assertTrue(a.attachments(case.id)[0].state.is_uploaded())

        sync(b)
        self.assertTrue(b.attachments(case.id)[0].state.is_remote_only())
        self.assertEqual(b.open_attachment(case.id, sha), photo)
        self.assertTrue(b.attachments(case.id)[0].state.is_downloaded())
        b.wipe()
        self.assert_error(g.GridcaseError.Revoked, b.open_attachment, case.id, sha)

    def test_wiped_phone_refuses_everything(self):
        a = self.open("wipe.db", TOKEN_A)
        a.wipe()
        self.assert_error(g.GridcaseError.Revoked, a.get_case, "x")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    failed = len(result.failures) + len(result.errors)
    print(f"{result.testsRun - failed - len(result.skipped)} passed, {failed} failed, {len(result.skipped)} skipped")
    sys.exit(1 if failed or not result.wasSuccessful() else 0)
