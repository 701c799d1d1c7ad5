// Kotlin binding tests of the FieldSync SDK, run on the JVM by scripts/bindings.sh.
// They exercise the generated glue (objects, records, errors, the listener, suspend
// calls), not the domain rules again: those are tested in Rust. main() also runs the sync
// tests of SyncTest.kt, which start a real sync server.

import java.nio.file.Files
import java.nio.file.Path
import kotlin.system.exitProcess
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue
import kotlinx.coroutines.runBlocking
import uniffi.fieldsync_ffi.ApiException
import uniffi.fieldsync_ffi.ClientChangeListener
import uniffi.fieldsync_ffi.ClientFilter
import uniffi.fieldsync_ffi.FieldEdit
import uniffi.fieldsync_ffi.MoveOptions
import uniffi.fieldsync_ffi.NewClient
import uniffi.fieldsync_ffi.NoteKind
import uniffi.fieldsync_ffi.PipelineTemplate
import uniffi.fieldsync_ffi.Replica
import uniffi.fieldsync_ffi.Role

/** Records every notification, in order. */
class RecordingListener : ClientChangeListener {
    val calls = mutableListOf<List<String>>()
    override fun onClientsChanged(clientIds: List<String>) {
        synchronized(calls) { calls.add(clientIds) }
    }
}

fun tempDir(): Path = Files.createTempDirectory("fieldsync-kotlin")

fun newTeam(dir: Path): Replica =
    Replica.create(dir.resolve("admin.db").toString(), "华东销售", "王芳", PipelineTemplate.SEVEN_STAGE)

fun lead(name: String, vararg fields: Pair<String, String>) =
    NewClient(profile = mapOf("name" to name, *fields))

val tests: List<Pair<String, () -> Unit>> = listOf(
    "a new team's replica acts for its admin" to {
        newTeam(tempDir()).use { replica ->
            val me = replica.identity()
            assertEquals("王芳", me.userName)
            assertEquals(Role.ADMIN, me.role)
            assertEquals("lead", replica.stages().first().key)
        }
    },
    "a created client is listed and can be edited" to {
        newTeam(tempDir()).use { replica ->
            val id = replica.createClient(lead("张伟", "company" to "杭州云启科技"))
            val rows = replica.listClients(ClientFilter())
            assertEquals(listOf(id), rows.map { it.id })
            assertEquals("张伟", rows.single().name)
            val view = replica.editClient(id, listOf(FieldEdit("company_size", "200"), FieldEdit("company", null)))
            assertEquals("200", view.profile["company_size"])
            assertTrue("company" !in view.profile)
        }
    },
    "leaving the lead stage without the required fields throws GateRefused naming them" to {
        newTeam(tempDir()).use { replica ->
            val id = replica.createClient(lead("张伟", "company_size" to "200"))
            val next = replica.stages()[1].key
            try {
                replica.moveStage(id, next, MoveOptions())
                throw AssertionError("the gate let the client through")
            } catch (e: ApiException.GateRefused) {
                assertEquals(listOf("budget_range", "decision_maker"), e.missingFields)
            }
            replica.editClient(id, listOf(FieldEdit("budget_range", "50万"), FieldEdit("decision_maker", "李总")))
            assertEquals(next, replica.moveStage(id, next, MoveOptions()).stage)
        }
    },
    "a client without a name is invalid input naming the field" to {
        newTeam(tempDir()).use { replica ->
            val e = assertFailsWith<ApiException.InvalidInput> {
                replica.createClient(NewClient(profile = mapOf("company" to "华为")))
            }
            assertEquals("name", e.field)
        }
    },
    "a likely duplicate is refused with its match" to {
        newTeam(tempDir()).use { replica ->
            val first = replica.createClient(lead("张伟", "phone" to "138-0013-8000"))
            val e = assertFailsWith<ApiException.Duplicate> {
                replica.createClient(lead("张伟 (new)", "phone" to "+86 13800138000"))
            }
            assertEquals(listOf(first), e.matches.map { it.clientId })
            replica.createClient(NewClient(profile = mapOf("name" to "张伟 (new)"), allowDuplicate = true))
        }
    },
    "the listener hears the client after each local edit" to {
        newTeam(tempDir()).use { replica ->
            val listener = RecordingListener()
            replica.setChangeListener(listener)
            val id = replica.createClient(lead("张伟"))
            replica.addNote(id, NoteKind.CALL, "首次电话，约了下周拜访")
            assertEquals(listOf(listOf(id), listOf(id)), listener.calls)
            replica.setChangeListener(null)
            replica.addNote(id, NoteKind.NOTE, "no one listens")
            assertEquals(2, listener.calls.size)
        }
    },
    "searchAsync is a suspend function that finds the client" to {
        newTeam(tempDir()).use { replica ->
            val id = replica.createClient(lead("张伟", "company" to "杭州云启科技"))
            val found = runBlocking { replica.searchAsync("云启") }
            assertEquals(listOf(id), found.map { it.id })
        }
    },
    "a closed replica reopens with the same clients" to {
        val dir = tempDir()
        val path = dir.resolve("admin.db").toString()
        val id = newTeam(dir).use { it.createClient(lead("张伟")) }
        Replica.open(path).use { replica ->
            assertEquals("张伟", replica.client(id).name)
            assertEquals("王芳", replica.identity().userName)
        }
    },
    "changes travel between two replicas of the team as bundles" to {
        val dir = tempDir()
        newTeam(dir).use { admin ->
            admin.addUser("李娜", Role.REP, null, listOf())
            val provisioning = admin.provisionDevice("李娜")
            Replica.join(dir.resolve("rep.db").toString(), provisioning).use { rep ->
                assertEquals("李娜", rep.identity().userName)
                val id = admin.createClient(NewClient(profile = mapOf("name" to "张伟"), owner = "李娜"))
                val listener = RecordingListener()
                rep.setChangeListener(listener)
                val summary = runBlocking { rep.importBundleAsync(admin.exportBundle(null)) }
                assertEquals(1UL, summary.newClients)
                assertEquals(listOf(id), summary.changedClients)
                assertEquals(listOf(listOf(id)), listener.calls)
                rep.addNote(id, NoteKind.VISIT, "拜访了客户")
                val back = runBlocking { rep.exportBundleAsync(admin.heads()) }
                admin.importBundle(back)
                assertEquals("拜访了客户", admin.client(id).notes.single().text)
                assertEquals(0UL, rep.importBundle(admin.exportBundle(null)).changed)
            }
        }
    },
)

fun main() {
    var passed = 0
    var failed = 0
    for ((name, test) in tests + syncTests) {
        try {
            test()
            println("ok    $name")
            passed++
        } catch (e: Throwable) {
            println("FAIL  $name: $e")
            failed++
        }
    }
    println("kotlin: $passed passed, $failed failed")
    exitProcess(if (failed == 0 && passed > 0) 0 else 1)
}
