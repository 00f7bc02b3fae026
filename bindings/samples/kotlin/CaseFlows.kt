// A sample to copy into an app: keeping screens current with Kotlin Flows over the generated
// API, without polling. Compiled (and exercised) by bindings/tests/run-kotlin.sh, so it cannot
// drift from the API. Swift: wrap `addChangeListener` in an `AsyncStream` the same way
// (bindings/README.md).
package cn.gridcase.samples

import cn.gridcase.*
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.*

/** A change that says "reload everything", as [caseChanges] sends first when primed. */
val RELOAD_ALL = CaseChangesRecord(ChangeSource.LOCAL, emptyList(), emptyList(), emptyList(), emptyList(), true)

/** Every change to this phone's cases; the listener is registered while the flow is collected.
 *  [primed]: [RELOAD_ALL] comes first, once the listener is in place, so a screen that loads
 *  on it misses no change made between its load and its first change. */
fun GridcasePhone.caseChanges(primed: Boolean = false): Flow<CaseChangesRecord> = callbackFlow {
    val id = addChangeListener(object : CaseChangeListener {
        override fun onCasesChanged(changes: CaseChangesRecord) {
            trySend(changes) // called on the thread that made the change; never blocks it
        }
    })
    if (primed) trySend(RELOAD_ALL)
    awaitClose { removeChangeListener(id) }
}

/** The first [pageSize] rows of [list]: loaded now, and again after each change (a burst of
 *  changes while a page loads is folded into one reload). */
fun GridcasePhone.watchList(list: CaseList, pageSize: UInt = 50u): Flow<CasePageRecord> =
    caseChanges(primed = true)
        .conflate()
        .map { listCases(list, 0UL, pageSize) }
        .flowOn(Dispatchers.IO)

/** One case, reloaded whenever it changes; the flow ends when the case leaves this phone. */
fun GridcasePhone.watchCase(caseId: String): Flow<CaseRecord> =
    caseChanges(primed = true)
        .filter { it.everything || caseId in it.updated || caseId in it.acknowledged || caseId in it.removed }
        .takeWhile { caseId !in it.removed }
        .conflate()
        .map { getCase(caseId) }
        .flowOn(Dispatchers.IO)

/** Every row of a list, a page at a time (an export, not a screen). */
fun GridcasePhone.allRows(list: CaseList, pageSize: UInt = 200u): Sequence<CaseSummaryRecord> = sequence {
    var offset: ULong? = 0UL
    while (offset != null) {
        val page = listCases(list, offset, pageSize)
        yieldAll(page.cases)
        offset = page.nextOffset
    }
}
