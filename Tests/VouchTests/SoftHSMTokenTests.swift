import Foundation
import XCTest

/// The SoftHSM2 helper the token tests build on: a token of the test's own, keys made in it, and a
/// failure that comes and goes.
final class SoftHSMTokenTests: XCTestCase {
    func testTokenInOwnDirectoryFailsAndComesBack() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let token = try SoftHSMToken(in: directory)

        let pinMode = try FileManager.default.attributesOfItem(atPath: token.pinFile)[.posixPermissions] as? Int
        XCTAssertEqual(pinMode, 0o600)
        XCTAssertEqual(try String(contentsOfFile: token.pinFile, encoding: .utf8), token.pin)
        XCTAssertTrue(try String(contentsOfFile: token.conf, encoding: .utf8)
            .contains("directories.tokendir = \(directory)/tokens\n"))

        let made = try token.pkcs11Tool(["--login", "--pin", token.pin, "--keypairgen",
                                         "--key-type", "EC:prime256v1", "--label", "k", "--id", "01"])
        XCTAssertEqual(made.status, 0, made.stderr)
        let objects = try token.listObjects()
        XCTAssertTrue(objects.contains("Private Key Object; EC"), objects)
        XCTAssertTrue(objects.contains("never extractable"), objects)

        // A second token under the same configuration is a separate token with its own PIN.
        let root = try token.initAnotherToken(label: "vouch-root")
        XCTAssertNotEqual(root.pin, token.pin)
        XCTAssertFalse(try root.listObjects().contains("Private Key Object"))
        // pkcs11-tool would take "vouch-ca-root" for "vouch-ca": such a pair is refused up front.
        XCTAssertThrowsError(try token.initAnotherToken(label: "vouch-ca-root"))

        try token.fail()
        XCTAssertThrowsError(try token.listObjects())
        XCTAssertEqual(try root.pkcs11Tool(["--login", "--pin", root.pin, "--list-objects"]).status, 0,
                       "only the failed token is gone")
        try token.restore()
        XCTAssertTrue(try token.listObjects().contains("Private Key Object; EC"))
    }
}
