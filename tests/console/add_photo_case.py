"""A grid worker's phone registers a case with a photo reference and syncs it (the phone API
through the generated Python bindings), as a phone does before its photo's bytes are uploaded.

    add_photo_case.py URL DEVICE_TOKEN SHA256 SIZE CAPTION

Prints the new case's id. Called by console.test.mjs; run.sh puts the bindings on PYTHONPATH.
"""

import asyncio
import os
import sys
import tempfile

import gridcase_bindings as g


def main(url, token, sha256, size, caption):
    with tempfile.TemporaryDirectory(prefix="gridcase-console-phone-") as workdir:
        phone = g.GridcasePhone.open(os.path.join(workdir, "phone.db"), url, token, os.urandom(32))
        asyncio.run(phone.sync(None))
        # A demo grid worker looks after a township (9 digits); its first village is 201.
        area = phone.identity().jurisdiction + "201"
        draft = g.NewCaseRecord(
            number="",
            channel=g.Channel.GRID,
            case_type=g.CaseType.REPORT,
            category="环境卫生",
            urgency=g.Urgency.GENERAL,
            priority=False,
            title="河道漂浮垃圾（附现场照片）",
            description="巡查发现河道内有漂浮垃圾，已拍照。",
            location=g.LocationRecord(address="村口河道", area_code=area, gps=None),
        )
        case = phone.create_case(draft, None)
        phone.act(case.id, g.Action.REGISTER())
        ref = g.AttachmentRef(sha256=sha256, mime="image/png", size=int(size), caption=caption)
        phone.add_attachment(case.id, ref)
        asyncio.run(phone.sync(None))
        rejected = phone.rejected_changes()
        pending = phone.sync_status().pending_changes
        if rejected or pending:
            sys.exit(f"the server did not take the case: rejected {rejected}, pending {pending}")
        print(case.id)


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(*sys.argv[1:])
