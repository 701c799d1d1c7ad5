// Kotlin sync tests of the FieldSync SDK against a real sync server, run by main() in
// ReplicaTest.kt. Each test that needs a server starts `fieldsync-server serve` (the binary
// scripts/bindings.sh builds and names in FIELDSYNC_SERVER_BIN) on 127.0.0.1 with a port
// the system picks and a temporary data folder, reads the admin token and the URL from its
// stdout, provisions users and devices through the admin API with java.net.http, and
// stops the server at the end. Every wait is bounded.

import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Path
import java.time.Duration
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlin.concurrent.thread
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNull
import kotlin.test.assertTrue
import kotlinx.coroutines.runBlocking
import uniffi.fieldsync_ffi.ApiException
import uniffi.fieldsync_ffi.ClientFilter
import uniffi.fieldsync_ffi.NoteKind
import uniffi.fieldsync_ffi.PipelineTemplate
import uniffi.fieldsync_ffi.Replica

const val ADMIN = "王芳"
const val REP = "李娜"
val START_TIMEOUT: Duration = Duration.ofSeconds(30)
val HTTP_TIMEOUT: Duration = Duration.ofSeconds(30)

/** A running fieldsync-server on loopback; `close()` stops it. */
class TestServer(private val process: Process, val url: String, private val adminToken: String) : AutoCloseable {
    private val http = HttpClient.newBuilder().connectTimeout(HTTP_TIMEOUT).build()

    /** POSTs JSON to the admin API with the admin token; returns the answer's body. */
    fun admin(path: String, json: String): String {
        val request = HttpRequest.newBuilder(URI.create(url + path))
            .timeout(HTTP_TIMEOUT)
            .header("Authorization", "Bearer $adminToken")
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(json))
            .build()
        val response = http.send(request, HttpResponse.BodyHandlers.ofString())
        check(response.statusCode() in 200..299) { "$path answered ${response.statusCode()}: ${response.body()}" }
        return response.body()
    }

    fun addRep(name: String) {
        admin("/v1/admin/users", """{"name": "$name", "role": "rep", "manager": "$ADMIN"}""")
    }

    /** Issues a device token for `user` (name or id). */
    fun deviceToken(user: String): String {
        val body = admin("/v1/admin/devices", """{"user": "$user"}""")
        return Regex(""""token"\s*:\s*"([^"]+)"""").find(body)?.groupValues?.get(1)
            ?: error("no token in $body")
    }

    override fun close() {
        process.destroy()
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
            process.destroyForcibly()
            process.waitFor(10, TimeUnit.SECONDS)
        }
    }
}

fun startServer(dir: Path): TestServer {
    val binary = System.getenv("FIELDSYNC_SERVER_BIN") ?: error("FIELDSYNC_SERVER_BIN is not set: run scripts/bindings.sh")
    val process = ProcessBuilder(
        binary, "serve", "--data", dir.resolve("server").toString(), "--listen", "127.0.0.1:0",
        "--team", "华东销售", "--admin", ADMIN,
    ).redirectError(ProcessBuilder.Redirect.DISCARD).start()
    process.outputStream.close()
    // A reader thread drains stdout for the server's whole life, so that the wait below is
    // bounded and the server never blocks on a full pipe. "" marks the end of the output.
    val lines = LinkedBlockingQueue<String>()
    thread(isDaemon = true) {
        process.inputStream.bufferedReader(Charsets.UTF_8).forEachLine { lines.put(it.trim()) }
        lines.put("")
    }
    try {
        var token: String? = null
        var url: String? = null
        val deadline = System.nanoTime() + START_TIMEOUT.toNanos()
        while (token == null || url == null) {
            val line = lines.poll(deadline - System.nanoTime(), TimeUnit.NANOSECONDS)
                ?: error("fieldsync-server printed no address within $START_TIMEOUT")
            when {
                line.isEmpty() -> error("fieldsync-server exited early")
                line.startsWith("admin device token (shown once): ") -> token = line.substringAfter(": ")
                line.startsWith("listening on ") -> url = line.removePrefix("listening on ")
            }
        }
        check(url.startsWith("http://127.0.0.1:")) { "not loopback: $url" }
        return TestServer(process, url, token)
    } catch (e: Throwable) {
        process.destroyForcibly()
        process.waitFor(10, TimeUnit.SECONDS)
        throw e
    }
}

val syncTests: List<Pair<String, () -> Unit>> = listOf(
    "a client made by a rep reaches the admin through the server (suspend sync)" to {
        val dir = tempDir()
        startServer(dir).use { server ->
            server.addRep(REP)
            val repToken = server.deviceToken(REP)
            val adminToken = server.deviceToken(ADMIN)
            val rep = runBlocking { Replica.joinServerAsync(dir.resolve("rep.db").toString(), server.url, repToken) }
            val admin = Replica.joinServer(dir.resolve("admin.db").toString(), server.url, adminToken)
            rep.use {
                admin.use {
                    assertEquals(REP, rep.identity().userName)
                    assertEquals(ADMIN, admin.identity().userName)
                    assertEquals(server.url, rep.serverUrl())

                    val adminListener = RecordingListener()
                    admin.setChangeListener(adminListener)
                    val id = rep.createClient(lead("张伟", "company" to "杭州云启科技"))
                    assertTrue(rep.outbox().isNotEmpty())

                    val sent = runBlocking { rep.sync() }
                    assertTrue(sent.uploaded >= 1UL, "uploaded ${sent.uploaded}")
                    assertEquals(0UL, sent.pending)
                    assertTrue(sent.bytesSent > 0UL && sent.bytesReceived > 0UL)
                    assertEquals(listOf(), rep.outbox())

                    val received = runBlocking { admin.sync() }
                    assertEquals(listOf(id), received.changedClients)
                    assertEquals(listOf(listOf(id)), synchronized(adminListener.calls) { adminListener.calls.toList() })
                    assertEquals("张伟", admin.client(id).name)
                    assertEquals(listOf(id), admin.listClients(ClientFilter(owner = REP)).map { it.id })

                    // And back: the admin's note reaches the rep, whose listener hears it.
                    val repListener = RecordingListener()
                    rep.setChangeListener(repListener)
                    admin.addNote(id, NoteKind.NOTE, "下周一起拜访")
                    runBlocking { admin.sync() }
                    assertEquals(listOf(id), runBlocking { rep.sync() }.changedClients)
                    assertEquals(listOf(listOf(id)), synchronized(repListener.calls) { repListener.calls.toList() })
                    assertEquals(listOf("下周一起拜访"), rep.client(id).notes.map { it.text })
                }
            }
        }
    },
    "a wrong device token throws NotPermitted" to {
        val dir = tempDir()
        startServer(dir).use { server ->
            assertFailsWith<ApiException.NotPermitted> {
                Replica.joinServer(dir.resolve("nobody.db").toString(), server.url, "fs_not-a-token")
            }
            Replica.joinServer(dir.resolve("admin.db").toString(), server.url, server.deviceToken(ADMIN)).use { admin ->
                assertFailsWith<ApiException.NotPermitted> {
                    runBlocking { admin.syncWith(server.url, "fs_not-a-token") }
                }
            }
        }
    },
    "an unreachable server throws Network" to {
        newTeam(tempDir()).use { replica ->
            // Port 1 on loopback: nothing listens there, the connection is refused at once.
            assertFailsWith<ApiException.Network> {
                runBlocking { replica.syncWith("http://127.0.0.1:1", "fs_any") }
            }
        }
    },
    "sync on a replica that joined no server throws InvalidInput on server" to {
        newTeam(tempDir()).use { replica ->
            assertNull(replica.serverUrl())
            val e = assertFailsWith<ApiException.InvalidInput> { runBlocking { replica.sync() } }
            assertEquals("server", e.field)
        }
    },
)
