import Foundation
import VouchAPI
import VouchCrypto
import XCTest

/// One connection cannot hold more than `CAServer.maxConcurrentStreams` (100) streams open on the
/// CA: each WatchTrustBundle stream holds memory while it lasts. Spoken as raw HTTP/2 over
/// `openssl s_client` (a gRPC client reads the limit and queues the 101st call itself). The server
/// announces the limit; 100 streams stay open; a client opening the 101st anyway breaks the
/// protocol and loses the connection (GOAWAY, PROTOCOL_ERROR: SwiftNIO's answer).
final class CAStreamLimitTests: XCTestCase {
    func testTheHundredAndFirstStreamOnOneConnectionIsRefusedWhileAHundredStayOpen() async throws {
        let fixture = try CAFixture()
        let key = try PrivateKey(generating: .p256)
        let identity = try fixture.writeIdentity(
            try await fixture.enroll(token: try fixture.createToken(spiffeID: "spiffe://example.org/svc/web"), key: key), key: key, name: "web")
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        client.arguments = ["openssl", "s_client", "-quiet", "-connect", fixture.server.address, "-alpn", "h2",
                            "-cert", identity.certificatePEMPath!, "-key", identity.keyPEMPath!, "-CAfile", identity.bundlePEMPath]
        let input = Pipe(), output = Pipe()
        client.standardInput = input
        client.standardOutput = output
        client.standardError = FileHandle.nullDevice
        try client.run()
        defer { client.terminate() }
        // A server that stops answering ends the reads below (end of file) instead of hanging the test.
        DispatchQueue.global().asyncAfter(deadline: .now() + 30) { if client.isRunning { client.terminate() } }
        let connection = FrameReader(output.fileHandleForReading)

        // Preface, empty SETTINGS, the ACK of the server's (its limit applies once acknowledged),
        // then 100 WatchTrustBundle calls: each stays open, streaming the bundle.
        input.fileHandleForWriting.write(Data(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
            + Self.frame(type: 4, flags: 0, stream: 0) + Self.frame(type: 4, flags: 1, stream: 0)
            + (0..<100).flatMap { Self.watchTrustBundle(stream: UInt32(2 * $0 + 1)) }))
        connection.read(until: 20) { $0.answered.count == 100 || $0.goAway != nil }
        XCTAssertEqual(connection.limit, 100, "SETTINGS_MAX_CONCURRENT_STREAMS the server announces")
        XCTAssertEqual(connection.answered.count, 100, "the 100 streams are answered")
        XCTAssertEqual(connection.reset, [:], "no stream is reset")
        XCTAssertNil(connection.goAway)

        input.fileHandleForWriting.write(Data(Self.watchTrustBundle(stream: 201)))
        connection.read(until: 20) { $0.goAway != nil || !$0.reset.isEmpty }
        XCTAssertEqual(connection.goAway, 1, "the 101st stream is refused: GOAWAY with PROTOCOL_ERROR")
        XCTAssertFalse(connection.answered.contains(201), "the 101st call is never served")
    }

    static func watchTrustBundle(stream: UInt32) -> [UInt8] {
        frame(type: 1, flags: 0x4, stream: stream, payload: headers([
            (":method", "POST"), (":scheme", "https"), (":path", "/vouch.v1.CertificateAuthority/WatchTrustBundle"),
            (":authority", "127.0.0.1"), ("content-type", "application/grpc"), ("te", "trailers")]))
            + frame(type: 0, flags: 0x1, stream: stream, payload: [0, 0, 0, 0, 0])  // one empty message, our side closed
    }

    static func frame(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8] = []) -> [UInt8] {
        let length = UInt32(payload.count)
        let header: [UInt8] = [UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff), type, flags,
                               UInt8(stream >> 24 & 0xff), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)]
        return header + payload
    }

    /// HPACK literal header fields without indexing, new names, no Huffman (all shorter than 127 bytes).
    static func headers(_ fields: [(String, String)]) -> [UInt8] {
        var block: [UInt8] = []
        for (name, value) in fields {
            block += [0, UInt8(name.utf8.count)]
            block += Array(name.utf8)
            block.append(UInt8(value.utf8.count))
            block += Array(value.utf8)
        }
        return block
    }
}

/// What the server's HTTP/2 frames said: streams answered with HEADERS, streams reset (with their
/// error code), the GOAWAY error code, and the announced SETTINGS_MAX_CONCURRENT_STREAMS.
final class FrameReader {
    let handle: FileHandle
    var buffer: [UInt8] = []
    var answered = Set<UInt32>(), reset: [UInt32: UInt32] = [:], goAway: UInt32?, limit: UInt32?

    init(_ handle: FileHandle) { self.handle = handle }

    func read(until seconds: TimeInterval, _ done: (FrameReader) -> Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        while !done(self) && Date() < deadline {
            let chunk = handle.availableData
            if chunk.isEmpty { return }
            buffer += chunk
            while buffer.count >= 9 {
                let length = Int(buffer[0]) << 16 | Int(buffer[1]) << 8 | Int(buffer[2])
                guard buffer.count >= 9 + length else { break }
                let stream = Self.number(buffer[5..<9]) & 0x7fff_ffff
                take(type: buffer[3], stream: stream, payload: Array(buffer[9..<9 + length]))
                buffer.removeFirst(9 + length)
            }
        }
    }

    private func take(type: UInt8, stream: UInt32, payload: [UInt8]) {
        switch type {
        case 1: answered.insert(stream)
        case 3: reset[stream] = Self.number(payload.prefix(4))
        case 4 where stream == 0:
            for offset in stride(from: 0, to: payload.count - 5, by: 6) where payload[offset + 1] == 3 {
                limit = Self.number(payload[offset + 2..<offset + 6])
            }
        case 7: goAway = Self.number(payload.dropFirst(4).prefix(4))
        default: break
        }
    }

    static func number(_ bytes: ArraySlice<UInt8>) -> UInt32 { bytes.reduce(0) { $0 << 8 | UInt32($1) } }
    static func number(_ bytes: [UInt8]) -> UInt32 { number(bytes[...]) }
}
