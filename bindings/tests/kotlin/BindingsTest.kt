// End-to-end test of the generated Kotlin API against a real gridcase-server (started by
// run-kotlin.sh). Exits non-zero when any check fails.

import cn.gridcase.*
import cn.gridcase.samples.*
import java.nio.file.Files
import java.security.SecureRandom
import java.util.concurrent.CopyOnWriteArrayList
import kotlin.system.exitProcess
import java.io.File
import kotlinx.coroutines.*
import kotlinx.coroutines.channels.Channel as Inbox

var failures = 0
var passed = 0

fun check(condition: Boolean, what: String) {
    if (condition) {
        passed++
        println("ok   $what")
    } else {
        failures++
        println("FAIL $what")
    }
}

inline fun <reified E : Throwable> expectThrows(what: String, body: () -> Unit): E? {
    try {
        body()
    } catch (e: Throwable) {
        if (e is E) {
            check(e.message?.isNotBlank() == true, "$what: ${e::class.simpleName} with a message (${e.message})")
            return e
        }
        check(false, "$what: expected ${E::class.simpleName}, got ${e::class.qualifiedName}: ${e.message}")
        return null
    }
    check(false, "$what: expected ${E::class.simpleName}, nothing was thrown")
    return null
}

class Recorder : SyncListener {
    val events = CopyOnWriteArrayList<ProgressRecord>()
    override fun onProgress(progress: ProgressRecord) {
        events.add(progress)
    }
}

fun env(name: String): String = System.getenv(name) ?: error("$name is not set (run bindings/tests/run-kotlin.sh)")

fun newCase(title: String, description: String) = NewCaseRecord(
    number = "",
    channel = Channel.GRID,
    caseType = CaseType.HELP,
    category = "public_lighting",
    urgency = Urgency.GENERAL,
    priority = false,
    title = title,
    description = description,
    location = LocationRecord("东关街道 3 号楼", "330604101201", GpsPoint(30.0, 120.6)),
)

/** A store key as an app makes one: 32 random bytes, kept in the Android Keystore. */
fun newKey() = ByteArray(32).also { SecureRandom().nextBytes(it) }

fun ids(page: CasePageRecord) = page.cases.map { it.caseId }

fun main() = runBlocking {
    val url = env("GRIDCASE_URL")
    val dir = Files.createTempDirectory("gridcase-kotlin")
    val keyA = newKey()
    val a = GridcasePhone.open("$dir/a.db", url, env("GRIDCASE_TOKEN_A"), keyA)
    val b = GridcasePhone.open("$dir/b.db", url, env("GRIDCASE_TOKEN_B"), newKey())

    // Before the first sync the phone does not know its user and refuses to write.
    expectThrows<GridcaseException.NotAllowed>("create before the first sync") {
        a.createCase(newCase("x", "y"), null)
    }

    // The first sync (at the office) teaches the phone who it is.
    a.sync(null)
    b.sync(null)
    check(a.identity()?.user == "wang" && a.identity()?.role == "grid_worker", "phone A learnt its identity")
    check(b.identity()?.user == "li", "phone B learnt its identity")

    // Offline: register a case, edit it, note and photo.
    val original = "3号楼门口路灯不亮，晚上看不清台阶。"
    val created = a.createCase(newCase("路灯不亮", original), ComplainantRecord("张三", "13812341234", false))
    val id = created.id
    check(created.status == Status.DRAFT, "a new case is a draft")
    val registered = a.act(id, Action.Register)
    check(registered.status == Status.REGISTERED, "register action moves it to registered")
    a.edit(id, CaseEdit.Title("3号楼路灯不亮"))
    a.edit(id, CaseEdit.Urgency(Urgency.URGENT))
    val noteId = a.addNote(id, "已拍照，等待电工")
    a.addAttachment(id, AttachmentRef("ab".repeat(32), "image/jpeg", 123456UL, "路灯照片"))
    val local = a.getCase(id)
    check(local.title == "3号楼路灯不亮" && local.urgency == Urgency.URGENT, "field edits are read back")
    check(local.notes.any { it.id == noteId } && local.attachments.size == 1, "note and attachment are stored")
    check(local.maskedPhone == "138****1234" && local.complainant?.name == "张三", "complainant held, phone masked")
    check(local.timeline.any { it.action == Action.Register }, "timeline records the action")
    check(a.syncStatus().pendingChanges > 0UL, "offline changes are pending")
    check(id in ids(a.listCases(CaseList.Mine, 0UL, 50u)), "my cases lists it")
    check(id in ids(a.listCases(CaseList.Search("路灯"), 0UL, 50u)), "search by title finds it")
    check(id in ids(a.listCases(CaseList.Status(Status.REGISTERED), 0UL, 50u)), "by status finds it")
    check(id in ids(a.listCases(CaseList.Area("330604101"), 0UL, 50u)), "by area finds it")
    check(a.countCases(CaseList.Mine) == 1UL && a.listCases(CaseList.Mine, 1UL, 50u).cases.isEmpty(),
        "counts and pages past the end")
    check(a.allRows(CaseList.All, 1u).map { it.caseId }.toList() == listOf(id), "the sample pages through a list")
    val deadline = a.deadline(id)
    check(deadline != null && deadline.stage == Stage.ROUTE && deadline.dueAt > deadline.startedAt,
        "the phone computes the route deadline ($deadline)")
    check(id !in ids(a.listCases(CaseList.Overdue, 0UL, 50u)), "a fresh case is not overdue")
    expectThrows<GridcaseException.NotAllowed>("a grid worker may not close") { a.act(id, Action.Close) }
    expectThrows<GridcaseException.NotFound>("unknown case") { a.getCase("no-such-case") }
    expectThrows<GridcaseException.InvalidInput>("empty title") { a.createCase(newCase(" ", "d"), null) }

    // Screens stay current: the sample's flows reload after each change, local or synced.
    val rows = Inbox<CasePageRecord>(Inbox.UNLIMITED)
    val watching = launch(Dispatchers.IO) { a.watchList(CaseList.Mine).collect { rows.send(it) } }
    val first = withTimeout(30_000) { rows.receive() }
    check(first.cases.single().title == "3号楼路灯不亮", "the watched list starts with what is stored")
    a.edit(id, CaseEdit.Title("3号楼路灯不亮（两盏）"))
    var reloaded = withTimeout(30_000) { rows.receive() }
    while (reloaded.cases.single().title != "3号楼路灯不亮（两盏）") reloaded = withTimeout(30_000) { rows.receive() }
    check(true, "an edit reloads the watched list")
    val changes = Inbox<CaseChangesRecord>(Inbox.UNLIMITED)
    val hearing = launch(Dispatchers.IO) { a.caseChanges(primed = true).collect { changes.send(it) } }
    check(withTimeout(30_000) { changes.receive() }.everything, "a primed flow starts with a reload")

    // Sync with progress.
    val progressA = Recorder()
    val summary = a.sync(progressA)
    check(progressA.events.isNotEmpty(), "progress was reported (${progressA.events.size} events)")
    check(progressA.events.any { it.casesSent > 0UL && it.bytesSent > 0UL }, "progress counts cases and bytes sent")
    check(progressA.events.last().phase == SyncPhase.DONE && progressA.events.last().bytesReceived > 0UL,
        "the last event is DONE with bytes received")
    check(summary.rejected.isEmpty() && summary.progress.casesSent > 0UL, "the server accepted the push")
    val statusA = a.syncStatus()
    check(statusA.pendingChanges == 0UL && statusA.lastSyncAt != null && statusA.lastError == null,
        "nothing pending after the sync ($statusA)")
    var heard = withTimeout(30_000) { changes.receive() }
    while (heard.source != ChangeSource.SYNC) heard = withTimeout(30_000) { changes.receive() }
    check(id in heard.acknowledged, "the listener hears the page that acknowledged the case ($heard)")
    hearing.cancel()
    watching.cancel()
    check(a.listCases(CaseList.Mine, 0UL, 50u).cases.none { it.hasPending }, "the unsent mark is gone")
    check(chinaTime(0L) == "1970-01-01 08:00", "times read as China time")

    // The second phone sees it.
    val progressB = Recorder()
    b.sync(progressB)
    check(progressB.events.any { it.casesReceived > 0UL }, "phone B reports cases received")
    val seen = b.getCase(id)
    check(seen.title == "3号楼路灯不亮（两盏）" && seen.status == Status.REGISTERED && seen.notes.size == 1,
        "phone B reads the case as phone A left it")

    // Both edit the description offline; after syncing both read the same merged text.
    a.spliceDescription(id, 0UL, 0UL, "【王】")
    b.setDescription(id, seen.description + "【李：已联系电工】")
    a.sync(null)
    b.sync(null)
    a.sync(null)
    val merged = a.getCase(id).description
    check(merged == b.getCase(id).description, "both phones read the same description")
    check(merged.contains("【王】") && merged.contains("【李：已联系电工】") && merged.contains("路灯不亮"),
        "the merged description keeps both edits: $merged")

    // A photo attached offline reaches the second phone byte-identical through the server.
    val photo = byteArrayOf(0xFF.toByte(), 0xD8.toByte(), 0xFF.toByte(), 0xE0.toByte()) +
        ByteArray(300_000).also { SecureRandom().nextBytes(it) }
    val photoFile = dir.resolve("photo.jpg").toFile().also { it.writeBytes(photo) }
    a.attachFile(id, photoFile.path, "image/jpeg", "现场照片", false)
    fun photoOf(phone: GridcasePhone) = phone.attachments(id).single { it.attachment.caption == "现场照片" }
    val sha = photoOf(a).attachment.sha256
    check(photoOf(a).state == AttachmentState.Local, "an offline attachment waits for its upload")
    check(a.openAttachment(id, sha).contentEquals(photo), "phone A opens its photo offline")
    val photoProgress = Recorder()
    val photoSync = a.sync(photoProgress)
    check(photoSync.uploaded == listOf(sha), "the sync uploaded the photo ($photoSync)")
    check(photoProgress.events.any { it.phase == SyncPhase.UPLOADING && it.blobBytesSent == photo.size.toULong() },
        "progress counts the photo's bytes")
    check(photoOf(a).state == AttachmentState.Uploaded, "the photo is on the server")
    b.sync(null)
    check(photoOf(b).state == AttachmentState.RemoteOnly, "phone B lists the photo before fetching it")
    check(b.openAttachment(id, sha).contentEquals(photo), "phone B opens the photo byte-identical")
    check(photoOf(b).state == AttachmentState.Downloaded, "phone B keeps the fetched photo")

    // The county's photo policy, set as the README shows it: a 3000x2000 camera photo is kept
    // (and sent) at 1600 px, with a thumbnail beside it.
    a.setPhotoPolicy(PhotoPolicyRecord(maxSidePx = 1600u, jpegQuality = 80u, keepLocation = false))
    val camera = java.awt.image.BufferedImage(3000, 2000, java.awt.image.BufferedImage.TYPE_INT_RGB)
    val cameraJpeg = java.io.ByteArrayOutputStream()
        .also { javax.imageio.ImageIO.write(camera, "jpg", it) }.toByteArray()
    a.attachBytes(id, cameraJpeg, "image/jpeg", "整改后", false)
    val prepared = a.attachments(id).single { it.attachment.caption == "整改后" && it.attachment.variant == null }
    val kept = javax.imageio.ImageIO.read(
        java.io.ByteArrayInputStream(a.openAttachment(id, prepared.attachment.sha256)))
    check(kept.width == 1600 && kept.height in 1066..1067,
        "the policy downscaled the photo (${kept.width}x${kept.height})")
    check(a.attachments(id).any {
        it.attachment.variant == "thumbnail" && it.attachment.variantOf == prepared.attachment.sha256
    }, "a thumbnail is kept beside the photo")
    a.setPhotoPolicy(null)

    // A cancelled sync leaves the store consistent and the next sync completes.
    a.addNote(id, "取消后的备注")
    val cancelling = object : SyncListener {
        override fun onProgress(progress: ProgressRecord) {
            a.cancelSync()
        }
    }
    expectThrows<GridcaseException.Cancelled>("cancelled sync") { a.sync(cancelling) }
    check(a.getCase(id).notes.any { it.text == "取消后的备注" }, "the store is readable after the cancel")
    check(a.syncStatus().pendingChanges > 0UL, "the unsent note is still pending")
    val after = Recorder()
    a.sync(after)
    check(a.syncStatus().pendingChanges == 0UL && after.events.any { it.casesSent > 0UL },
        "the next sync sends it")
    b.sync(null)
    check(b.getCase(id).notes.any { it.text == "取消后的备注" }, "phone B gets the note")

    // Cancelling the coroutine that awaits the sync cancels the sync too.
    a.addNote(id, "协程取消后的备注")
    lateinit var job: Job
    val cancelJob = object : SyncListener {
        override fun onProgress(progress: ProgressRecord) {
            job.cancel()
            Thread.sleep(300) // let the cancellation reach the library before the exchange
        }
    }
    job = launch { a.sync(cancelJob) }
    job.join()
    check(job.isCancelled, "the sync coroutine was cancelled")
    // The coroutine ends at once; the sync's thread stops at its next check (nothing waits for
    // it: reads go on while it winds down), so its error shows up shortly after.
    var afterJob = a.syncStatus()
    for (attempt in 1..200) {
        if (afterJob.lastError?.contains("cancel") == true) break
        delay(50)
        afterJob = a.syncStatus()
    }
    check(afterJob.pendingChanges > 0UL && afterJob.lastError?.contains("cancel") == true,
        "cancelling the coroutine stopped the sync before it sent anything ($afterJob)")
    var retried: SyncSummaryRecord? = null
    for (attempt in 1..100) {
        try {
            retried = a.sync(null)
            break
        } catch (e: GridcaseException.NotAllowed) {
            delay(50) // the cancelled sync's thread is still winding down
        }
    }
    check(retried != null && a.syncStatus().pendingChanges == 0UL, "a sync after the cancelled coroutine completes")
    b.sync(null)
    check(b.getCase(id).notes.any { it.text == "协程取消后的备注" }, "phone B gets that note too")

    // Errors reach Kotlin as the documented exceptions.
    val stranger = GridcasePhone.open("$dir/stranger.db", url, "0123456789abcdef0123456789abcdef.not-the-secret-at-all", newKey())
    expectThrows<GridcaseException.Unauthorized>("unknown token") { stranger.sync(null) }
    val offline = GridcasePhone.open("$dir/offline.db", "http://127.0.0.1:9", env("GRIDCASE_TOKEN_A"), newKey())
    expectThrows<GridcaseException.Network>("server unreachable") { offline.sync(null) }
    check(offline.syncStatus().lastError != null, "the failure is kept as the last error")

    // The store is encrypted with the app's key: another key is refused and changes nothing.
    val before = File("$dir/a.db").readBytes()
    expectThrows<GridcaseException.WrongKey>("a wrong store key") {
        GridcasePhone.open("$dir/a.db", url, env("GRIDCASE_TOKEN_A"), newKey())
    }
    expectThrows<GridcaseException.InvalidInput>("a key of the wrong length") {
        GridcasePhone.open("$dir/short.db", url, env("GRIDCASE_TOKEN_A"), ByteArray(16))
    }
    check(File("$dir/a.db").readBytes().contentEquals(before), "the wrong key changed nothing")
    check(GridcasePhone.open("$dir/a.db", url, env("GRIDCASE_TOKEN_A"), keyA).getCase(id).title.isNotEmpty(),
        "the right key opens it")

    a.close()
    b.close()

    // Never blocked: a sync held mid-exchange on a phone of 20,000 cases.
    stalledSyncTest(dir.toFile(), newKey())

    dir.toFile().deleteRecursively()
    println("$passed passed, $failures failed")
    if (failures > 0) exitProcess(1)
}
