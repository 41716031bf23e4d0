import Foundation
import Testing
import StrataTestSupport
@testable import StrataCore
@testable import StrataLauncher

/// The container spec as a file: what strata writes reads back equal, and `ps` finds the
/// command without decoding the rest, whatever the command holds.
@Suite struct RuntimeSpecTests {
    func spec(_ args: [String]) -> RuntimeSpec {
        RuntimeSpec(process: RuntimeSpec.Process(user: RuntimeSpec.User(uid: 0, gid: 0), args: args, env: ["A=1"], cwd: "/"),
                    root: RuntimeSpec.Root(path: "merged"), hostname: "h", mounts: RuntimeSpec.standardMounts,
                    annotations: [RuntimeSpec.Annotation.user: "", "process": "a \"process\" : { \"args\" : [\"no\"] }"],
                    linux: RuntimeSpec.Linux(namespaces: [RuntimeSpec.Namespace(type: "pid")],
                                             seccomp: RuntimeSpec.resolved(.dockerDefault, capabilities: .dockerDefault)))
    }

    @Test func argsWithoutDecodingTheRest() throws {
        let t = TempDir("strata-spec"); defer { t.remove() }
        for args in [["sh", "-c", #"echo "]" [x] \ \"q\""#], [], ["ünï", "{\"args\": [1]}", "]"]] {
            let s = spec(args)
            try s.write(into: t.path)
            #expect(try RuntimeSpec.read(from: t.path) == s)
            #expect(RuntimeSpec.argsArray(in: Array(try s.json())) != nil)
            #expect(try RuntimeSpec.readArgs(from: t.path) == args)
        }
        // Another layout (compact, keys in another order) is decoded whole.
        try Data(#"{"root":{"path":"r"},"process":{"cwd":"/","args":["x","y"]}}"#.utf8).write(to: URL(fileURLWithPath: t.sub("config.json")))
        #expect(try RuntimeSpec.readArgs(from: t.path) == ["x", "y"])
        #expect(RuntimeSpec.argsArray(in: Array(#"{"process":{"cwd":"/","args":["x"]}}"#.utf8)) == nil)
    }
}
