// swift-tools-version:6.1
import Foundation
import PackageDescription

/// libFuzzer harnesses for the STUN decoder and the CHECKPOINT control codec, kept out of the
/// root package so that neither `swift build` nor `swift test` there ever compiles them. Build
/// and run them with `scripts/fuzz-stun` and `scripts/fuzz-control` (which pass
/// `-sanitize=fuzzer,address -parse-as-library`).
///
/// The root package is a path dependency, whose identity is its directory's name; compute it
/// rather than assume the checkout is called "main".
let rootIdentity = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "PeerwayFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // Declares libFuzzer's `LLVMFuzzerRunDriver` for Swift.
        .target(name: "CLibFuzzer"),
        // `LLVMFuzzerTestOneInput`: decode, re-encode, decode again, compare.
        .executableTarget(
            name: "STUNDecoderFuzzer",
            dependencies: [
                "CLibFuzzer",
                .product(name: "PeerwaySTUN", package: rootIdentity),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Writes the seed corpus (RFC 5769 vectors and encoder output) into a directory.
        .executableTarget(
            name: "STUNFuzzSeeds",
            dependencies: [
                .product(name: "PeerwaySTUN", package: rootIdentity),
            ]
        ),
        // `LLVMFuzzerTestOneInput` for control packets and frames: decode, re-encode, compare.
        .executableTarget(
            name: "ControlDecoderFuzzer",
            dependencies: [
                "CLibFuzzer",
                .product(name: "PeerwayCheckpoint", package: rootIdentity),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Writes the control seed corpus (encoder output of every packet type and many frames).
        .executableTarget(
            name: "ControlFuzzSeeds",
            dependencies: [
                .product(name: "PeerwayCheckpoint", package: rootIdentity),
                .product(name: "PeerwaySTUN", package: rootIdentity),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
    ]
)
