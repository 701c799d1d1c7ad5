"""Python binding tests of the FieldSync SDK, run with pytest by scripts/bindings.sh.

They exercise the generated glue (objects, records, errors, the listener, async calls),
not the domain rules again: those are tested in Rust. The generated module and the
library sit in the folder scripts/bindings.sh puts on PYTHONPATH.
"""

import asyncio
import gc

import pytest

from fieldsync_ffi import (
    ApiError,
    ClientChangeListener,
    ClientFilter,
    FieldEdit,
    MoveOptions,
    NewClient,
    NoteKind,
    PipelineTemplate,
    Replica,
    Role,
)


class RecordingListener(ClientChangeListener):
    """Records every notification, in order."""

    def __init__(self):
        self.calls = []

    def on_clients_changed(self, client_ids):
        self.calls.append(list(client_ids))


def new_team(tmp_path):
    return Replica.create(str(tmp_path / "admin.db"), "华东销售", "王芳", PipelineTemplate.SEVEN_STAGE)


def lead(name, **fields):
    return NewClient(profile={"name": name, **fields})


def test_a_new_teams_replica_acts_for_its_admin(tmp_path):
    replica = new_team(tmp_path)
    me = replica.identity()
    assert me.user_name == "王芳"
    assert me.role == Role.ADMIN
    assert replica.stages()[0].key == "lead"


def test_a_created_client_is_listed_and_can_be_edited(tmp_path):
    replica = new_team(tmp_path)
    client_id = replica.create_client(lead("张伟", company="杭州云启科技"))
    rows = replica.list_clients(ClientFilter())
    assert [r.id for r in rows] == [client_id]
    assert rows[0].name == "张伟"
    view = replica.edit_client(
        client_id, [FieldEdit(field="company_size", value="200"), FieldEdit(field="company", value=None)]
    )
    assert view.profile["company_size"] == "200"
    assert "company" not in view.profile


def test_leaving_the_lead_stage_without_the_required_fields_raises_gate_refused(tmp_path):
    replica = new_team(tmp_path)
    client_id = replica.create_client(lead("张伟", company_size="200"))
    next_stage = replica.stages()[1].key
    try:
        replica.move_stage(client_id, next_stage, MoveOptions())
        pytest.fail("the gate let the client through")
    except ApiError.GateRefused as e:
        assert e.missing_fields == ["budget_range", "decision_maker"]
    replica.edit_client(
        client_id,
        [FieldEdit(field="budget_range", value="50万"), FieldEdit(field="decision_maker", value="李总")],
    )
    assert replica.move_stage(client_id, next_stage, MoveOptions()).stage == next_stage


def test_a_client_without_a_name_is_invalid_input_naming_the_field(tmp_path):
    replica = new_team(tmp_path)
    with pytest.raises(ApiError.InvalidInput) as raised:
        replica.create_client(NewClient(profile={"company": "华为"}))
    assert raised.value.field == "name"


def test_the_listener_hears_the_client_after_each_local_edit(tmp_path):
    replica = new_team(tmp_path)
    listener = RecordingListener()
    replica.set_change_listener(listener)
    client_id = replica.create_client(lead("张伟"))
    replica.add_note(client_id, NoteKind.CALL, "首次电话，约了下周拜访")
    assert listener.calls == [[client_id], [client_id]]
    replica.set_change_listener(None)
    replica.add_note(client_id, NoteKind.NOTE, "no one listens")
    assert len(listener.calls) == 2


def test_search_async_is_awaitable_and_finds_the_client(tmp_path):
    replica = new_team(tmp_path)
    client_id = replica.create_client(lead("张伟", company="杭州云启科技"))
    found = asyncio.run(replica.search_async("云启"))
    assert [r.id for r in found] == [client_id]


def test_a_closed_replica_reopens_with_the_same_clients(tmp_path):
    replica = new_team(tmp_path)
    client_id = replica.create_client(lead("张伟"))
    del replica
    gc.collect()
    reopened = Replica.open(str(tmp_path / "admin.db"))
    assert reopened.client(client_id).name == "张伟"
    assert reopened.identity().user_name == "王芳"


def test_changes_travel_between_two_replicas_of_the_team_as_bundles(tmp_path):
    admin = new_team(tmp_path)
    admin.add_user("李娜", Role.REP, None, [])
    rep = Replica.join(str(tmp_path / "rep.db"), admin.provision_device("李娜"))
    assert rep.identity().user_name == "李娜"
    client_id = admin.create_client(NewClient(profile={"name": "张伟"}, owner="李娜"))
    listener = RecordingListener()
    rep.set_change_listener(listener)
    summary = asyncio.run(rep.import_bundle_async(admin.export_bundle(None)))
    assert summary.new_clients == 1
    assert summary.changed_clients == [client_id]
    assert listener.calls == [[client_id]]
    rep.add_note(client_id, NoteKind.VISIT, "拜访了客户")
    admin.import_bundle(asyncio.run(rep.export_bundle_async(admin.heads())))
    assert [n.text for n in admin.client(client_id).notes] == ["拜访了客户"]
    assert rep.import_bundle(admin.export_bundle(None)).changed == 0
