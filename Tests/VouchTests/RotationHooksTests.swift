import Foundation
import Synchronization
@testable import vouch
import VouchAPI
@testable import VouchAgent
import VouchCrypto
import XCTest

/// The agent's hook runner (`FileChangeHooks`) in process: changes within the debounce run the
/// hooks once with `VOUCH_CHANGED` naming them all; changes while a hook runs merge into one next
/// run; `--hook-on` drops the other kinds; the signal goes once per run; a hanging hook is killed
/// after its timeout and stopping kills the running one and starts no more. A trust update is a
/// `bundle` change only when bundle.pem or chain.pem changed, a `crl` change when crl.pem did
/// (a root's CRL); a fetched CRL is a `crl` change when it has new bytes (a re-signed CRL without
/// new serials too), not when it is the one held. The agent calling it
/// after a revocation and a rotation is shown end to end in HookChangeProcessTests.
final class RotationHooksTests: XCTestCase {
    /// Lines the hooks appended to `path`.
    private func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func testVouchChangedNamesTheKindsSortedAndHookOnNamesAreChecked() throws {
        XCTAssertEqual(FileChange.crl.description, "crl")
        XCTAssertEqual(FileChange([.crl, .bundle]).description, "bundle,crl")
        XCTAssertEqual(FileChange.all.description, "bundle,certificate,crl")
        XCTAssertEqual(try FileChange.parse("crl, certificate").get(), [.certificate, .crl])

        func resolved(_ arguments: [String]) throws -> AgentConfiguration {
            try AgentCommand.parse(["--ca", "127.0.0.1:8443", "--ca-bundle", "/b.pem", "--out", "/out"] + arguments)
                .resolvedConfiguration(nil).0
        }
        let defaults = try resolved([])
        XCTAssertEqual(defaults.hookOn, .all)
        XCTAssertEqual(defaults.hookDebounce, .seconds(1))
        let set = try resolved(["--hook-on", "certificate", "--hook-debounce", "0"])
        XCTAssertEqual(set.hookOn, .certificate)
        XCTAssertEqual(set.hookDebounce, .zero)
        XCTAssertThrowsError(try resolved(["--hook-on", "certificate,cert"])) {
            XCTAssertEqual("\($0)", #"--hook-on: unknown change "cert" (bundle, certificate, crl)"#)
        }
        XCTAssertThrowsError(try resolved(["--hook-on", ""])) {
            XCTAssertEqual("\($0)", #"--hook-on: unknown change "" (bundle, certificate, crl)"#)
        }
        // A debounce so long that servers would never reload is a typo, refused.
        XCTAssertEqual(try resolved(["--hook-debounce", "5m"]).hookDebounce, .seconds(300))
        XCTAssertThrowsError(try resolved(["--hook-debounce", "1000d"])) {
            XCTAssertEqual("\($0)", "--hook-debounce must be at most 5m")
        }
        let file = ConfigFile.AgentSection(hookDebounce: "3s", hookOn: "crl,bundle")
        let fromFile = try AgentCommand.parse(["--ca", "127.0.0.1:8443", "--ca-bundle", "/b.pem", "--out", "/out"]).resolvedConfiguration(file).0
        XCTAssertEqual(fromFile.hookOn, [.crl, .bundle])
        XCTAssertEqual(fromFile.hookDebounce, .seconds(3))
    }

    func testChangesWithinTheDebounceRunTheHooksOnceWithAllOfThem() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = CollectedLog()
        let runs = directory + "/runs"
        let hooks = FileChangeHooks(command: "echo \"$VOUCH_CHANGED $VOUCH_SERIAL $VOUCH_DIR\" >> \(runs)", signal: nil, pidFile: nil,
                                    debounce: .milliseconds(300), directory: directory, currentSerial: { "0a" }, logger: log.logger)
        defer { hooks.stop() }

        let first = Date()
        hooks.notify(.crl)
        XCTAssertLessThan(Date().timeIntervalSince(first), 0.1, "notify returns at once")
        Thread.sleep(forTimeInterval: 0.1)
        hooks.notify(.bundle)
        hooks.notify(.crl)
        XCTAssertTrue(eventually { !lines(runs).isEmpty })
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(first), 0.3, "not before the debounce from the first change")
        XCTAssertEqual(lines(runs), ["bundle,crl 0a \(directory)"], "one run for the three changes, serial and directory as before")
        XCTAssertTrue(eventually { log.lines.contains { $0.contains("hooks ran for bundle,crl") } }, "\(log.lines)")

        // The next change starts a new debounce and a run of its own.
        hooks.notify(.certificate)
        XCTAssertTrue(eventually { lines(runs).count == 2 })
        XCTAssertEqual(lines(runs).last, "certificate 0a \(directory)")
    }

    func testChangesWhileAHookRunsMergeIntoOneNextRunAndAHangingHookIsKilledAfterTheTimeout() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = CollectedLog()
        let runs = directory + "/runs"
        let serial = Mutex("01")
        // Each run records its process group (the shell's pid), serial and changes, then hangs.
        let hooks = FileChangeHooks(command: "echo \"$$ $VOUCH_SERIAL $VOUCH_CHANGED\" >> \(runs); sleep 300", signal: nil, pidFile: nil,
                                    timeout: .milliseconds(500), debounce: .zero, directory: directory,
                                    currentSerial: { serial.withLock { $0 } }, logger: log.logger)
        defer { hooks.stop() }
        func run(_ index: Int) -> [String]? {
            let all = lines(runs)
            return all.count > index ? all[index].split(separator: " ").map(String.init) : nil
        }

        let started = Date()
        hooks.notify(.certificate)
        XCTAssertTrue(eventually { run(0) != nil })
        let first = try XCTUnwrap(run(0))
        XCTAssertEqual(Array(first.dropFirst()), ["01", "certificate"])
        serial.withLock { $0 = "02" }
        hooks.notify(.crl)
        hooks.notify(.bundle)
        hooks.notify(.crl)
        XCTAssertEqual(log.lines.filter { $0.contains("hook still running; this change runs with the next hooks") }.count, 3, "\(log.lines)")

        XCTAssertTrue(eventually { log.lines.contains { $0.contains("exec hook timed out; killed its process group") } }, "\(log.lines)")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.5, "not before the timeout")
        XCTAssertTrue(eventually { !processGroupIsAlive(Int32(first[0]) ?? 0) }, "the hook's shell and its sleep are killed")
        XCTAssertTrue(eventually { run(1) != nil }, "the merged changes run next")
        XCTAssertEqual(Array(try XCTUnwrap(run(1)).dropFirst()), ["02", "bundle,crl"], "one run for the three changes, with the serial now held")
        // That run hangs too and is killed; nothing else was queued.
        XCTAssertTrue(eventually { log.lines.filter { $0.contains("exec hook timed out") }.count == 2 }, "\(log.lines)")
        XCTAssertTrue(eventually { log.lines.contains { $0.contains("hooks ran for bundle,crl") } }, "\(log.lines)")
        XCTAssertEqual(lines(runs).count, 2, "no second queued run")
    }

    func testHookOnIgnoresTheOtherKindsAndTheSignalGoesOncePerRun() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = CollectedLog()
        // A shell that writes a line per SIGUSR1 it gets.
        let received = directory + "/received"
        let target = Process()
        target.executableURL = URL(fileURLWithPath: "/bin/sh")
        target.arguments = ["-c", "trap 'echo usr1 >> \(received)' USR1; while :; do sleep 0.05; done"]
        try target.run()
        defer { target.terminate() }
        let pidFile = directory + "/target.pid"
        try "\(target.processIdentifier)\n".write(toFile: pidFile, atomically: true, encoding: .utf8)
        let runs = directory + "/runs"
        let hooks = FileChangeHooks(command: "echo \"$VOUCH_CHANGED\" >> \(runs)", signal: SIGUSR1, pidFile: pidFile,
                                    debounce: .milliseconds(200), runOn: [.certificate, .bundle], directory: directory, logger: log.logger)
        defer { hooks.stop() }

        hooks.notify(.crl)
        hooks.notify(.bundle)
        hooks.notify(.certificate)
        hooks.notify(.crl)
        XCTAssertTrue(eventually { log.lines.contains { $0.contains("hooks ran for") } }, "\(log.lines)")
        XCTAssertEqual(lines(runs), ["bundle,certificate"], "crl is not among the kinds hooks run on")
        XCTAssertTrue(eventually { lines(received).count == 1 }, "the signal is sent")
        hooks.notify(.crl)
        Thread.sleep(forTimeInterval: 0.3)
        XCTAssertEqual(lines(runs).count, 1, "a crl change alone runs nothing")
        XCTAssertEqual(lines(received), ["usr1"], "once for the one run")
    }

    func testATrustUpdateIsABundleChangeWhenBundleOrChainPemChangedAndACRLChangeWhenCrlPemDid() async throws {
        let world = try RolloverWorld()
        let reported = Mutex<[FileChange]>([])
        let follower = TrustFollower(files: world.files, trust: world.trust, replicas: CAReplicas(CAAddressList(world.configuration.caAddress),
                                     logger: world.log.logger), source: world.source, clock: SystemAgentClock(), state: world.state,
                                     logger: world.log.logger, onFilesChanged: { change in
            if !change.isEmpty { reported.withLock { $0.append(change) } }
        })
        // `root prepare`: bundle.pem gains R2. (This world starts without crl.pem, which the
        // same write creates, so `crl` may come with it.)
        await follower.apply(world.prepared, reloadListener: {})
        XCTAssertEqual(reported.withLock { $0 }.map { $0.subtracting(.crl) }, [.bundle], "\(world.log.lines)")
        // The same bundle again (a stream reopened): no file changed.
        await follower.apply(world.prepared, reloadListener: {})
        XCTAssertEqual(reported.withLock { $0 }.count, 1)
        // The same bundle with a new root CRL: crl.pem changed, bundle.pem did not.
        var withRootCRL = world.prepared
        withRootCRL.rootCRLs = [try world.r1.makeCRL(entries: [], number: 1, thisUpdate: Date().addingTimeInterval(-60),
                                                      nextUpdate: Date().addingTimeInterval(3600))]
        await follower.apply(withRootCRL, reloadListener: {})
        XCTAssertEqual(reported.withLock { $0 }.dropFirst(), [.crl], "\(world.log.lines)")
        // A new intermediate only changes ca_intermediates.pem, which servers do not read.
        let key = try PrivateKey(generating: .p256)
        let rotated = try world.r1.sign(publicKeyOf: key, template: RolloverWorld.authority("Vouch Intermediate CA 3", pathLength: 0))
        await follower.apply(world.bundle(8, roots: [world.r1.certificate, world.r2.certificate],
                                          intermediates: [world.i1.certificate, world.i2.certificate, world.cross, rotated],
                                          endorsements: [world.endorsement]), reloadListener: {})
        XCTAssertTrue(world.log.lines.contains { $0.contains("trust bundle updated") && $0.contains("generation=8") }, "\(world.log.lines)")
        XCTAssertEqual(reported.withLock { $0 }.count, 2, "\(reported.withLock { $0 })")
    }

    func testACRLWithNewBytesIsACRLChangeAndTheSameCRLAgainIsNot() async throws {
        let world = try RolloverWorld()
        let reported = Mutex<[FileChange]>([])
        func crl(_ number: Int64) throws -> [UInt8] {
            try world.i1.makeCRL(entries: [], number: number, thisUpdate: Date().addingTimeInterval(-60), nextUpdate: Date().addingTimeInterval(3600))
        }
        let crls = ScriptedIssuerCRLs()
        crls.set(["": try crl(1)])
        let follower = RevocationFollower(files: world.files, replicas: CAReplicas(CAAddressList(world.configuration.caAddress), logger: world.log.logger),
                                          source: crls, refreshInterval: .seconds(60), clock: SystemAgentClock(), logger: world.log.logger,
                                          onFilesChanged: { change in reported.withLock { $0.append(change) } })
        try await follower.refreshCRL()
        XCTAssertEqual(reported.withLock { $0 }, [.crl], "the first CRL written")
        try await follower.refreshCRL()
        XCTAssertEqual(reported.withLock { $0 }, [.crl], "the same CRL fetched again changes no file")
        // The CA's periodic re-signing: no new serial, but a new CRL that servers holding the old one need.
        crls.set(["": try crl(2)])
        try await follower.refreshCRL()
        XCTAssertEqual(reported.withLock { $0 }, [.crl, .crl])
    }

    func testStoppingKillsTheRunningHookAndStartsNoMore() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = CollectedLog()
        let runs = directory + "/runs"
        let hooks = FileChangeHooks(command: "echo $$ >> \(runs); sleep 300", signal: nil, pidFile: nil,
                                    timeout: .seconds(30), debounce: .zero, logger: log.logger)
        hooks.notify(.certificate)
        XCTAssertTrue(eventually { !lines(runs).isEmpty })
        let running = try XCTUnwrap(Int32(lines(runs)[0]))
        hooks.notify(.crl)

        hooks.stop()
        XCTAssertTrue(eventually(timeout: 1) { !processGroupIsAlive(running) }, "stopping kills the running hook's process group")
        XCTAssertTrue(log.lines.contains { $0.contains("shutting down: killed the running exec hook") }, "\(log.lines)")
        hooks.notify(.bundle)
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertEqual(lines(runs).count, 1, "neither the merged change nor a later one starts a hook after stop")
    }
}
