import Foundation
import StrataTestSupport
import Testing
@testable import StrataCore
@testable import StrataEngine
@testable import StrataFormats

/// Value tests, no root: the config editor keeps what it does not know, and the run plan
/// combines Entrypoint, Cmd and Env as Docker does.
@Suite struct ConfigEditorTests {
    static let diff = try! DiffID(parsing: "sha256:" + String(repeating: "a", count: 64))

    @Test func unknownKeysAreKept() throws {
        let source = #"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"X-Vendor":{"k":1}},"# +
            #""rootfs":{"type":"layers","diff_ids":[]},"history":[],"moby.buildkit.buildinfo.v1":"abc"}"#
        var e = try ConfigEditor(bytes: Array(source.utf8), what: "test")
        var cfg = ImageConfig.Config()
        cfg.Cmd = ["true"]
        try e.merge(cfg)
        e.appendLayer(ConfigEditorTests.diff, history: .init(created: "2026-01-01T00:00:00Z", createdBy: "test", author: "me"))
        let out = try JSONSerialization.jsonObject(with: Data(try e.bytes())) as! [String: Any]
        #expect(out["moby.buildkit.buildinfo.v1"] as? String == "abc")
        let config = out["config"] as! [String: Any]
        #expect(config["Cmd"] as? [String] == ["true"] && (config["X-Vendor"] as? [String: Any])?["k"] as? Int == 1)
        #expect((out["rootfs"] as! [String: Any])["diff_ids"] as? [String] == [ConfigEditorTests.diff.description])
        #expect(out["author"] as? String == "me")
        // Sorted keys, slashes unescaped: the bytes read as the peers write them.
        let text = String(decoding: try e.bytes(), as: UTF8.self)
        #expect(text.hasPrefix(#"{"architecture":"amd64","author":"me","config""#))
    }

    @Test func historyStaysAlignedWithLayers() throws {
        let source = #"{"created":"2024-01-01T00:00:00Z","rootfs":{"type":"layers","diff_ids":["\#(ConfigEditorTests.diff)","\#(ConfigEditorTests.diff)"]},"# +
            #""history":[{"created_by":"one"},{"created_by":"ENV x","empty_layer":true}]}"#
        var e = try ConfigEditor(bytes: Array(source.utf8), what: "test")
        e.appendLayer(ConfigEditorTests.diff, history: .init(created: "2026-01-01T00:00:00Z", createdBy: "mine"))
        let out = try JSONSerialization.jsonObject(with: Data(try e.bytes())) as! [String: Any]
        let history = out["history"] as! [[String: Any]]
        #expect(history.count == 4)
        #expect(history.filter { $0["empty_layer"] as? Bool != true }.count == 3)
        #expect(history[2]["created"] as? String == "2024-01-01T00:00:00Z" && history.last?["created_by"] as? String == "mine")
        #expect(throws: StrataError.self) { try ConfigEditor(bytes: Array("[1]".utf8), what: "test") }
    }

    @Test func runPlanCombinesAsDocker() {
        var c = ImageConfig.Config()
        c.Entrypoint = ["/entry"]
        c.Cmd = ["default"]
        c.Env = ["A=1", "PATH=/bin"]
        c.WorkingDir = "/w"
        c.User = "app"
        let host = ["FROM_HOST": "h"]
        let plain = RunPlan.process(config: c, overrides: RunOverrides(), hostEnvironment: host)
        #expect(plain.args == ["/entry", "default"] && plain.cwd == "/w" && plain.user == "app")
        let args = RunPlan.process(config: c, overrides: RunOverrides(command: ["x"]), hostEnvironment: host)
        #expect(args.args == ["/entry", "x"])
        let entry = RunPlan.process(config: c, overrides: RunOverrides(entrypoint: "/other"), hostEnvironment: host)
        #expect(entry.args == ["/other"], "--entrypoint clears the image's Cmd")
        let cleared = RunPlan.process(config: c, overrides: RunOverrides(entrypoint: "", command: ["sh"]), hostEnvironment: host)
        #expect(cleared.args == ["sh"])
        let env = RunPlan.process(config: c, overrides: RunOverrides(env: ["A=2", "FROM_HOST", "MISSING"], workdir: "/x", user: "0"),
                                  hostEnvironment: host)
        #expect(env.env == ["PATH=/bin", "A=2", "FROM_HOST=h"] && env.cwd == "/x" && env.user == "0")
    }
}
