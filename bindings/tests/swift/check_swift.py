#!/usr/bin/env python3
"""Checks the generated Swift bindings of the FieldSync SDK without a Swift compiler.

There is no Swift toolchain on the CI machines, so the Swift sources are NOT compiled
here. This script checks, by reading the generated text, that the public API an iOS app
uses is present (the Replica class and its methods, ApiError, the listener protocol, the
records and enums, async functions), that the modulemap names the header, and that every
C function the header declares is exported by the built library, so the XCFramework
would link.

Usage: check_swift.py SWIFT_DIR LIBRARY
"""

import ctypes
import re
import sys
from pathlib import Path

MODULE = "fieldsync_ffi"

RECORDS = [
    "Approval", "Board", "BoardColumn", "ClientConflicts", "ClientFilter", "ClientRow",
    "ClientView", "DuplicateMatch", "FieldConflict", "FieldEdit", "FlowEdge", "FlowReport",
    "HandoverView", "Identity", "ImportSummary", "LossReasonCount", "Member", "MoveOptions",
    "NewClient", "Note", "OverdueGroup", "QuoteRequested", "QuoteView", "Stage", "StageHealth",
    "SyncReport", "TaskView", "TransitionView",
]
ENUMS = ["NoteKind", "PipelineTemplate", "QuoteStatus", "Role", "SlaStatus", "StageKind"]
ERROR_CASES = [
    r"case InvalidInput\(\s*(/\*\*.*?\*/)?\s*field: String,\s*(/\*\*.*?\*/)?\s*reason: String",
    r"case GateRefused\(\s*(/\*\*.*?\*/)?\s*missingFields: \[String\]",
    r"case NotPermitted\(",
    r"case Duplicate\(\s*(/\*\*.*?\*/)?\s*matches: \[DuplicateMatch\]",
    r"case Storage\(",
    r"case Network\(",
]
REPLICA_METHODS = [
    "addNote", "addUser", "board", "client", "completeTask", "conflicts", "createClient",
    "decideQuote", "duplicates", "editClient", "exportBundle", "handover", "handoverAll",
    "heads", "identity", "importBundle", "listClients", "lossReasons", "markDeparted",
    "members", "moveStage", "outbox", "overdue", "provisionDevice", "report", "requestQuote",
    "search", "serverUrl", "setChangeListener", "setCollaborator", "setSupervisor", "stages",
    "sync", "syncWith", "tagClient",
]
SIGNATURES = [
    r"public static func create\(path: String, teamName: String, adminName: String, template: PipelineTemplate\)\s*throws\s*-> Replica",
    r"public static func join\(path: String, provisioning: Data\)\s*throws\s*-> Replica",
    r"public static func `open`\(path: String\)\s*throws\s*-> Replica",
    r"public static func joinServer\(path: String, serverUrl: String, deviceToken: String\)\s*throws\s*-> Replica",
    r"public static func joinServerAsync\(path: String, serverUrl: String, deviceToken: String\)\s*async throws\s*-> Replica",
    r"func sync\(\)\s*async throws\s*-> SyncReport",
    r"func syncWith\(serverUrl: String, deviceToken: String\)\s*async throws\s*-> SyncReport",
    r"func moveStage\(clientId: String, stage: String, options: MoveOptions\)\s*throws\s*-> ClientView",
    r"func searchAsync\(query: String\)\s*async throws\s*-> \[ClientRow\]",
    r"func exportBundleAsync\(have: Data\?\)\s*async throws\s*-> Data",
    r"func importBundleAsync\(bundle: Data\)\s*async throws\s*-> ImportSummary",
    r"func setChangeListener\(listener: ClientChangeListener\?\)",
]


def main() -> int:
    swift_dir, library = Path(sys.argv[1]), sys.argv[2]
    swift = (swift_dir / f"{MODULE}.swift").read_text()
    header = (swift_dir / f"{MODULE}FFI.h").read_text()
    modulemap = (swift_dir / f"{MODULE}FFI.modulemap").read_text()
    checks = []

    def check(name, ok):
        checks.append((name, bool(ok)))

    check("class Replica", re.search(r"open class Replica\b", swift))
    check("Replica has doc comments", "A FieldSync replica: the team's clients" in swift)
    for sig in SIGNATURES:
        check(f"signature {sig[:60]}", re.search(sig, swift))
    for method in REPLICA_METHODS:
        check(f"Replica.{method}", re.search(rf"open func {method}\(", swift))
    check(
        "SyncReport fields",
        re.search(r"public struct SyncReport\b.*?public var changedClients: \[String\].*?public var pending: UInt64", swift, re.S),
    )
    check("enum ApiError: Swift.Error", re.search(r"public\s+enum ApiError: Swift\.Error", swift))
    for case in ERROR_CASES:
        check(f"ApiError {case[:30]}", re.search(case, swift, re.S))
    check("protocol ClientChangeListener", re.search(r"public protocol ClientChangeListener\b", swift))
    check(
        "ClientChangeListener.onClientsChanged",
        re.search(r"func onClientsChanged\(clientIds: \[String\]\)", swift),
    )
    for record in RECORDS:
        check(f"struct {record}", re.search(rf"public struct {record}: Equatable", swift))
    for enum in ENUMS:
        check(f"enum {enum}", re.search(rf"public enum {enum}: Equatable", swift))
    check("modulemap names the module", f"module {MODULE}FFI" in modulemap)
    check("modulemap names the header", f'header "{MODULE}FFI.h"' in modulemap)

    declared = set(re.findall(rf"\b((?:uniffi|ffi)_{MODULE}_\w+)\(", header))
    check("header declares the scaffolding functions", len(declared) > 40)
    used = set(re.findall(rf"\b(uniffi_{MODULE}_fn_\w+)\(", swift))
    check("every function the Swift calls is in the header", used and used <= declared)
    lib = ctypes.CDLL(library)
    missing = sorted(f for f in declared if not hasattr(lib, f))
    check(f"the library exports every header function (missing: {missing[:3]})", not missing)

    failed = [name for name, ok in checks if not ok]
    for name, ok in checks:
        if not ok:
            print(f"FAIL  {name}")
    print(f"swift (generated sources checked by text; NOT compiled, no Swift toolchain here): "
          f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not checks else 0


if __name__ == "__main__":
    sys.exit(main())
