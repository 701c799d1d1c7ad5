"""Python sync tests of the FieldSync SDK against a real sync server.

Each test that needs a server starts `fieldsync-server serve` (the binary
scripts/bindings.sh builds and names in FIELDSYNC_SERVER_BIN) on 127.0.0.1 with a port the
system picks and a temporary data folder, reads the admin token and the URL from its
stdout, provisions users and devices through the admin API, and stops the server at the
end. Every wait is bounded.
"""

import asyncio
import json
import os
import queue
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from fieldsync_ffi import (
    ApiError,
    ClientChangeListener,
    ClientFilter,
    NewClient,
    NoteKind,
    PipelineTemplate,
    Replica,
)

ADMIN = "王芳"
REP = "李娜"
START_TIMEOUT = 30  # seconds for the server to print its address
HTTP_TIMEOUT = 30


class RecordingListener(ClientChangeListener):
    """Records every notification, in order (sync notifies from a worker thread)."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def on_clients_changed(self, client_ids):
        with self.lock:
            self.calls.append(list(client_ids))


class Server:
    """A running fieldsync-server on loopback."""

    def __init__(self, process, url, admin_token):
        self.process = process
        self.url = url
        self.admin_token = admin_token

    def admin(self, path, body):
        """POSTs JSON to the admin API with the admin token; returns the JSON answer."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            return json.loads(response.read())

    def device_token(self, user):
        return self.admin("/v1/admin/devices", {"user": user})["token"]


@pytest.fixture
def server(tmp_path):
    binary = os.environ.get("FIELDSYNC_SERVER_BIN")
    if not binary:
        pytest.fail("FIELDSYNC_SERVER_BIN is not set: run scripts/bindings.sh")
    process = subprocess.Popen(
        [binary, "serve", "--data", str(tmp_path / "server"), "--listen", "127.0.0.1:0",
         "--team", "华东销售", "--admin", ADMIN],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    # A reader thread drains stdout for the server's whole life, so that the wait below is
    # bounded and the server never blocks on a full pipe.
    lines = queue.Queue()

    def drain():
        for line in process.stdout:
            lines.put(line.strip())
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    try:
        token = url = None
        while token is None or url is None:
            line = lines.get(timeout=START_TIMEOUT)
            if line is None:
                pytest.fail(f"fieldsync-server exited early with {process.wait(timeout=10)}")
            if line.startswith("admin device token (shown once): "):
                token = line.split(": ", 1)[1]
            elif line.startswith("listening on "):
                url = line.removeprefix("listening on ")
        assert url.startswith("http://127.0.0.1:")
        yield Server(process, url, token)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_a_client_made_by_a_rep_reaches_the_admin_through_the_server(server, tmp_path):
    server.admin("/v1/admin/users", {"name": REP, "role": "rep", "manager": ADMIN})
    rep_token = server.device_token(REP)
    admin_token = server.device_token(ADMIN)

    rep = asyncio.run(Replica.join_server_async(str(tmp_path / "rep.db"), server.url, rep_token))
    admin = Replica.join_server(str(tmp_path / "admin.db"), server.url, admin_token)
    assert rep.identity().user_name == REP
    assert admin.identity().user_name == ADMIN
    assert rep.server_url() == server.url

    admin_listener = RecordingListener()
    admin.set_change_listener(admin_listener)
    client_id = rep.create_client(NewClient(profile={"name": "张伟", "company": "杭州云启科技"}))
    assert rep.outbox() != []

    sent = asyncio.run(rep.sync())
    assert sent.uploaded >= 1
    assert sent.pending == 0
    assert sent.requests >= 1 and sent.bytes_sent > 0 and sent.bytes_received > 0
    assert rep.outbox() == []

    received = asyncio.run(admin.sync())
    assert received.changed_clients == [client_id]
    assert received.downloaded >= 1
    assert admin_listener.calls == [[client_id]]
    assert admin.client(client_id).name == "张伟"
    assert [r.id for r in admin.list_clients(ClientFilter(owner=REP))] == [client_id]

    # And back: the admin's note reaches the rep, whose listener hears the client.
    rep_listener = RecordingListener()
    rep.set_change_listener(rep_listener)
    admin.add_note(client_id, NoteKind.NOTE, "下周一起拜访")
    assert admin_listener.calls == [[client_id], [client_id]]  # the local edit
    assert asyncio.run(admin.sync()).uploaded >= 1
    assert asyncio.run(rep.sync()).changed_clients == [client_id]
    assert rep_listener.calls == [[client_id]]
    assert [n.text for n in rep.client(client_id).notes] == ["下周一起拜访"]

    # A sync with nothing new changes nothing and tells the listener nothing.
    quiet = asyncio.run(admin.sync())
    assert quiet.changed_clients == [] and quiet.uploaded == 0
    assert len(admin_listener.calls) == 2


def test_a_wrong_device_token_is_not_permitted(server, tmp_path):
    with pytest.raises(ApiError.NotPermitted):
        Replica.join_server(str(tmp_path / "nobody.db"), server.url, "fs_not-a-token")
    admin = Replica.join_server(str(tmp_path / "admin.db"), server.url, server.device_token(ADMIN))
    with pytest.raises(ApiError.NotPermitted):
        asyncio.run(admin.sync_with(server.url, "fs_not-a-token"))


def test_an_unreachable_server_is_a_network_error(tmp_path):
    replica = Replica.create(str(tmp_path / "a.db"), "华东销售", ADMIN, PipelineTemplate.SEVEN_STAGE)
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    with pytest.raises(ApiError.Network):
        asyncio.run(replica.sync_with("http://127.0.0.1:1", "fs_any"))


def test_sync_without_a_joined_server_is_invalid_input(tmp_path):
    replica = Replica.create(str(tmp_path / "a.db"), "华东销售", ADMIN, PipelineTemplate.SEVEN_STAGE)
    assert replica.server_url() is None
    with pytest.raises(ApiError.InvalidInput) as e:
        asyncio.run(replica.sync())
    assert e.value.field == "server"
