// The app is never blocked by the network, seen from Kotlin: a phone holding 20,000 cases
// syncs through a proxy that holds the connection until the test releases it; meanwhile the
// app lists, opens, creates, edits and acts, each call within a generous bound (a correctness
// check of the threading, not a benchmark). Released, the sync completes and the edits made
// while it was in flight are still pending, then go with the next sync.

import cn.gridcase.*
import java.io.File
import java.io.IOException
import java.net.InetAddress
import java.net.ServerSocket
import java.net.Socket
import java.net.URI
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Semaphore
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread
import kotlinx.coroutines.*

const val STALL_CASES = 20_000
const val BOUND_MS = 50.0

/** Forwards connections to 127.0.0.1:[target]; while [stall] is set, a new connection waits for
 *  it (after announcing itself on [entered]) before anything is forwarded. */
class StallingProxy(private val target: Int) : AutoCloseable {
    private val server = ServerSocket(0, 50, InetAddress.getLoopbackAddress())
    val url = "http://127.0.0.1:${server.localPort}"
    @Volatile var stall: CountDownLatch? = null
    val entered = Semaphore(0)

    init {
        thread(isDaemon = true, name = "proxy-accept") {
            while (true) {
                val client = try { server.accept() } catch (e: IOException) { break }
                thread(isDaemon = true, name = "proxy-conn") { forward(client) }
            }
        }
    }

    private fun forward(client: Socket) {
        stall?.let { entered.release(); it.await() }
        client.use {
            Socket(InetAddress.getLoopbackAddress(), target).use { upstream ->
                val up = thread(isDaemon = true) {
                    runCatching { client.getInputStream().copyTo(upstream.getOutputStream()) }
                    runCatching { upstream.shutdownOutput() }
                }
                runCatching { upstream.getInputStream().copyTo(client.getOutputStream()) }
                up.join(1000)
            }
        }
    }

    override fun close() = server.close()
}

/** Fills a new store with [cases] cases through the terminal phone's `demo-fill` (stored as a
 *  restore stores what the server sends), faster than 20,000 syncs or a demo server would. */
fun fillStore(path: String, token: String, key: ByteArray, cases: Int) {
    val fill = ProcessBuilder(env("GRIDCASE_PHONE_BIN"), "--store", path, "--token", token,
        "--server", env("GRIDCASE_URL"), "demo-fill", "--cases", "$cases", "--area", "3306041019")
        .redirectErrorStream(true)
    fill.environment()["GRIDCASE_STORE_KEY"] = key.joinToString("") { "%02x".format(it) }
    val process = fill.start()
    val output = process.inputStream.bufferedReader().readText()
    check(process.waitFor() == 0) { "demo-fill failed: $output" }
}

fun <T> timed(what: String, took: MutableList<Pair<String, Double>>, call: () -> T): T {
    val started = System.nanoTime()
    val out = call()
    took.add(what to (System.nanoTime() - started) / 1e6)
    return out
}

suspend fun stalledSyncTest(dir: File, key: ByteArray) = coroutineScope {
    val started = System.nanoTime()
    val token = env("GRIDCASE_TOKEN_STALL")
    fillStore("$dir/stall.db", token, key, STALL_CASES)
    val serverPort = URI(env("GRIDCASE_URL")).port
    StallingProxy(serverPort).use { proxy ->
        run {
            val phone = GridcasePhone.open("$dir/stall.db", proxy.url, token, key)
            phone.sync(null) // learns who it is
            val held = phone.countCases(CaseList.Area("3306041019"))
            println("     (a store of $held cases filled and synced in ${(System.nanoTime() - started) / 1_000_000_000} s)")
            check(held == STALL_CASES.toULong(), "the phone holds $STALL_CASES cases ($held)")
            val someone = phone.listCases(CaseList.Area("330604101907"), 300UL, 1u).cases.single().caseId
            val mine = phone.createCase(newCase("停滞同步前", "同步前创建"), null).id
            val other = phone.createCase(newCase("停滞同步前（二）", "同步前创建"), null).id

            val release = CountDownLatch(1)
            proxy.stall = release
            val syncing = async(Dispatchers.IO) { phone.sync(null) }
            check(proxy.entered.tryAcquire(120, TimeUnit.SECONDS), "the sync reached the network and is held there")

            // The calls run on their own thread: if one waited for the sync, the watchdog
            // releases the proxy and the check fails instead of the test hanging.
            val took = mutableListOf<Pair<String, Double>>()
            var during = ""
            val app = thread(name = "app") {
                timed("list", took) { phone.listCases(CaseList.All, 0UL, 50u) }
                timed("list by area", took) { phone.listCases(CaseList.Area("330604101903"), 500UL, 50u) }
                timed("show", took) { phone.getCase(someone) }
                during = timed("create", took) { phone.createCase(newCase("停滞同步中", "同步中创建"), null) }.id
                timed("edit", took) { phone.edit(mine, CaseEdit.Urgency(Urgency.URGENT)) }
                timed("note", took) { phone.addNote(mine, "同步进行中添加的备注") }
                timed("act", took) { phone.act(other, Action.Register) }
                timed("count", took) { phone.countCases(CaseList.Mine) }
            }
            app.join(60_000)
            val blocked = app.isAlive
            release.countDown()
            proxy.stall = null
            check(!blocked, "no call waited for the stalled sync")
            println("     calls while the sync was held: ${took.joinToString { "${it.first} %.1f ms".format(it.second) }}")
            for ((what, ms) in took) check(ms < BOUND_MS, "$what took %.1f ms while the sync was held".format(ms))

            val summary = syncing.await()
            check(summary.pages >= 1u && phone.syncStatus().lastError == null, "the held sync completed once released")
            val status = phone.syncStatus()
            check(status.pendingChanges >= 3UL, "edits made while it was in flight are still pending ($status)")
            val pending = phone.listCases(CaseList.Mine, 0UL, 50u).cases.filter { it.hasPending }.map { it.caseId }
            check(pending.containsAll(listOf(mine, other, during)),
                "the cases edited or created meanwhile wait for the next sync ($pending)")
            phone.sync(null)
            check(phone.syncStatus().pendingChanges == 0UL, "the next sync sends them")
            val reread = phone.getCase(mine)
            check(reread.urgency == Urgency.URGENT && reread.notes.any { it.text == "同步进行中添加的备注" },
                "the edits made meanwhile are kept")
            check(phone.getCase(other).status == Status.REGISTERED, "and so is the action")
            phone.close()
        }
    }
}
