// swift-tools-version:6.0
import PackageDescription

/// Every test target may reach every module (and the shared test support).
let testDependencies: [Target.Dependency] = [
    "StrataTestSupport", "StrataCore", "StrataSystem", "StrataArchive", "StrataFormats", "StrataLayer",
    "StrataStore", "StrataDrivers", "StrataLauncher", "StrataEngine", "StrataRegistry", "StrataNetwork", "CArchive", "CStrata",
]

let package = Package(
    name: "strata",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "strata", targets: ["strata"]),
        .executable(name: "strata-init", targets: ["strata-init"]),
        .executable(name: "strata-monitor", targets: ["strata-monitor"]),
        .library(name: "StrataEngine", targets: ["StrataEngine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // libarchive from the system (Debian: libarchive-dev), linked statically with the compressors
        // it uses (libz, shared with others, stays a shared library): a command no longer loads the
        // libxml2, ICU, nettle and libacl that libarchive's other formats need, nor five libraries'
        // relocations (Sources/CArchive/static_link.c).
        .target(
            name: "CArchive",
            linkerSettings: [
                .unsafeFlags(["-Xlinker", "-l:libarchive.a", "-Xlinker", "-l:liblzma.a", "-Xlinker", "-l:libzstd.a",
                              "-Xlinker", "-l:libbz2.a", "-Xlinker", "-l:liblz4.a"]),
                .linkedLibrary("z"),
            ]
        ),
        // libseccomp from the system (Debian: libseccomp-dev): compiles seccomp profiles to BPF.
        .systemLibrary(
            name: "CSeccomp",
            pkgConfig: "libseccomp",
            providers: [.apt(["libseccomp-dev"])]
        ),
        // pid 1 of a container run with --init: a static C program loaded from a sealed memfd.
        .executableTarget(name: "strata-init", linkerSettings: [.unsafeFlags(["-static-executable", "-Xlinker", "--gc-sections", "-Xlinker", "--strip-all"])]),
        // What stays of a detached container's monitor while it runs (conmon's role), in C:
        // a small static program instead of the whole strata binary per container.
        .executableTarget(name: "strata-monitor", linkerSettings: [.unsafeFlags(["-static-executable", "-Xlinker", "--gc-sections", "-Xlinker", "--strip-all"])]),
        // The few calls Swift cannot make directly: openat2, syncfs, per-thread locale.
        .target(name: "CStrata", linkerSettings: [.linkedLibrary("sqlite3")]),
        // A user who is not root: the user namespace every command joins, entered before main.
        .target(name: "CRootless"),
        // The child side of the launcher: clone → namespaces → pivot_root → exec, in C.
        .target(name: "CLauncher"),
        // Errors, digests, identities. No I/O.
        .target(
            name: "StrataCore",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        // The only Swift code that talks to Glibc for files: fd-anchored operations.
        .target(name: "StrataSystem", dependencies: ["StrataCore", "CStrata"]),
        // Streaming tar and compression over libarchive; hashing taps; no filesystem policy.
        .target(
            name: "StrataArchive",
            dependencies: ["StrataCore", "StrataSystem", "CArchive",
                           .product(name: "Crypto", package: "swift-crypto")]
        ),
        // OCI image-spec and docker-archive types and readers.
        .target(name: "StrataFormats", dependencies: ["StrataCore", "StrataSystem", "StrataArchive"]),
        // tar -> directory (whiteouts in overlay form) with the tar-split journal; the overlay
        // form both ways: the merged view of layers, the change scan, applying layers onto a copy.
        .target(
            name: "StrataLayer",
            dependencies: ["StrataCore", "StrataSystem", "StrataArchive"]
        ),
        // Union drivers (overlay, vfs): describe and perform mounts; the overlay form itself is StrataLayer's.
        .target(name: "StrataDrivers", dependencies: ["StrataCore", "StrataSystem", "StrataLayer"]),
        // Namespaces, cgroups, users, the process: knows a rootfs and a config, nothing about layers.
        .target(name: "StrataLauncher", dependencies: ["StrataCore", "StrataSystem", "CStrata", "CLauncher", "CSeccomp"]),
        // Bridge networks on netavark: the networks' records, addresses, published ports, the
        // host-wide subnet claims and netavark's JSON. Knows nothing of images or processes.
        .target(name: "StrataNetwork", dependencies: ["StrataCore", "StrataSystem"]),
        // Blobs, layers, images, tags; SQLite metadata; the import pipeline.
        .target(
            name: "StrataStore",
            dependencies: ["StrataCore", "StrataSystem", "StrataArchive", "StrataFormats", "StrataLayer",
                           "StrataDrivers",
                           .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        // Registries: references, the distribution API (token and Basic auth, TLS), manifests,
        // and layer blobs streamed with backpressure.
        .target(
            name: "StrataRegistry",
            dependencies: ["StrataCore", "StrataSystem", "StrataArchive", "StrataFormats",
                           .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "Logging", package: "swift-log")]
        ),
        // The library: a store and what is done with it from start to end (run, bundle, rm, gc
        // and check with the cgroups). Re-exports the modules its API uses.
        .target(name: "StrataEngine", dependencies: ["StrataCore", "StrataSystem", "StrataArchive", "StrataFormats", "StrataLayer",
                                                   "StrataDrivers", "StrataLauncher", "StrataStore", "StrataRegistry", "StrataNetwork",
                                                   .product(name: "Logging", package: "swift-log")]),
        .executableTarget(
            name: "strata",
            dependencies: ["StrataEngine", "StrataStore", "StrataRegistry", "StrataNetwork", "StrataDrivers", "StrataCore", "StrataSystem", "StrataFormats", "StrataArchive", "StrataLauncher", "CRootless",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log")],
            exclude: ["exports.map"],
            // Release builds export `main` only: the static Swift runtime links with
            // --export-dynamic, which fills the dynamic symbol table with ~38,000 symbols that
            // nothing looks up and that dladdr (called by the runtime at start) scans.
            // And they are position-dependent, as runc, podman, skopeo and umoci are here: a PIE
            // made every start apply 137,000 relative relocations, each page of metadata they
            // touch a copy-on-write fault (2-3 ms of a 7 ms `--version`; docs/start-up.md).
            linkerSettings: [.unsafeFlags(["-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/strata/exports.map", "-Xlinker", "-no-pie"],
                                          .when(configuration: .release))]
        ),
        // What the tests share: temporary directories, processes, tar and layout builders, fixtures.
        .target(
            name: "StrataTestSupport",
            dependencies: ["StrataCore", "StrataSystem", "StrataArchive", "StrataFormats", "StrataLayer",
                           "StrataDrivers", "StrataLauncher", "StrataStore", "StrataEngine", "CStrata"],
            path: "Tests/StrataTestSupport"
        ),
        // Digests, chainIDs, entry names: values, no root.
        .testTarget(name: "StrataCoreTests", dependencies: testDependencies),
        // References (values, no root); pulls from a real registry started by the tests (root).
        .testTarget(name: "StrataRegistryTests", dependencies: testDependencies),
        // Raw tar headers: values, no root.
        .testTarget(name: "StrataArchiveTests", dependencies: testDependencies),
        // Unpacking and rebuilding layers on disk (root: devices, owners, xattrs).
        .testTarget(name: "StrataLayerTests", dependencies: testDependencies),
        // seccomp profiles, capabilities, cgroup detection: values, no root.
        .testTarget(name: "StrataLauncherTests", dependencies: testDependencies),
        // What each union driver says about itself and how it describes a mount: values, no root.
        .testTarget(name: "StrataDriversTests", dependencies: testDependencies),
        // The store end to end (root): load, save, check, containers, mounts, hostile input, concurrency.
        .testTarget(name: "StrataStoreTests", dependencies: testDependencies),
        // Integration through the strata binary and real containers (root, overlayfs, cgroups, runc).
        .testTarget(name: "StrataEngineTests", dependencies: testDependencies),
    ],
    swiftLanguageModes: [.v6]
)
