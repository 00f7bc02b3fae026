// End-to-end test of the generated Kotlin API against a real gridcase-server (started by
// run-kotlin.sh). Exits non-zero when any check fails.

import cn.gridcase.*
import java.nio.file.Files
import java.util.concurrent.CopyOnWriteArrayList
import kotlin.system.exitProcess
import kotlinx.coroutines.*

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

fun main() = runBlocking {
    val url = env("GRIDCASE_URL")
    val dir = Files.createTempDirectory("gridcase-kotlin")
    val a = GridcasePhone.open("$dir/a.db", url, env("GRIDCASE_TOKEN_A"))
    val b = GridcasePhone.open("$dir/b.db", url, env("GRIDCASE_TOKEN_B"))

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
    check(a.myCases().any { it.caseId == id }, "my cases lists it")
    check(a.search("路灯").any { it.caseId == id }, "search by title finds it")
    check(a.byStatus(Status.REGISTERED).any { it.caseId == id }, "by status finds it")
    check(a.byArea("330604101").any { it.caseId == id }, "by area finds it")
    val deadline = a.deadline(id)
    check(deadline != null && deadline.stage == Stage.ROUTE && deadline.dueAt > deadline.startedAt,
        "the phone computes the route deadline ($deadline)")
    check(a.overdue().none { it.caseId == id }, "a fresh case is not overdue")
    expectThrows<GridcaseException.NotAllowed>("a grid worker may not close") { a.act(id, Action.Close) }
    expectThrows<GridcaseException.NotFound>("unknown case") { a.getCase("no-such-case") }
    expectThrows<GridcaseException.InvalidInput>("empty title") { a.createCase(newCase(" ", "d"), null) }

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

    // The second phone sees it.
    val progressB = Recorder()
    b.sync(progressB)
    check(progressB.events.any { it.casesReceived > 0UL }, "phone B reports cases received")
    val seen = b.getCase(id)
    check(seen.title == "3号楼路灯不亮" && seen.status == Status.REGISTERED && seen.notes.size == 1,
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
    // syncStatus waits for the cancelled sync's thread to let go of the store.
    val afterJob = a.syncStatus()
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
    val stranger = GridcasePhone.open("$dir/stranger.db", url, "0123456789abcdef0123456789abcdef.not-the-secret-at-all")
    expectThrows<GridcaseException.Unauthorized>("unknown token") { stranger.sync(null) }
    val offline = GridcasePhone.open("$dir/offline.db", "http://127.0.0.1:9", env("GRIDCASE_TOKEN_A"))
    expectThrows<GridcaseException.Network>("server unreachable") { offline.sync(null) }
    check(offline.syncStatus().lastError != null, "the failure is kept as the last error")

    a.close()
    b.close()
    dir.toFile().deleteRecursively()
    println("$passed passed, $failures failed")
    if (failures > 0) exitProcess(1)
}
