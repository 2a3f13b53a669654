#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NIOCore

/// The parts of a supernode, as `SupernodeError` names them.
public enum SupernodeService: String, Sendable, CustomStringConvertible {
    /// The data directory and the files in it (the key, the `address` and `admin-url` files).
    case dataDirectory = "data directory"
    /// The INDEX's store (SQLite or PostgreSQL).
    case index = "INDEX"
    /// The raw RELAY (`RelayServer`).
    case relay = "RELAY"
    /// CHECKPOINT (`CheckpointServer`), over UDP and TCP; and the configuration it is given.
    case checkpoint = "CHECKPOINT"
    /// The STUN pair (`STUNPairServer`).
    case stun = "STUN pair"
    /// The INDEX's management API (`IndexAdminServer`).
    case admin = "INDEX management API"
    /// Membership in a network of supernodes (`SupernodeCluster`: the database and the mesh).
    case cluster = "cluster"

    /// The name people know the service by ("CHECKPOINT", "STUN pair").
    public var description: String { rawValue }
}

/// Why `Supernode.start` failed: which service, why, and what to do. Everything the start had
/// opened was closed again before it was thrown.
public struct SupernodeError: Error, CustomStringConvertible {
    /// The service that failed.
    public let service: SupernodeService
    /// Why, and what to do, e.g. "could not bind udp 127.0.0.1:7400: address in use; pick
    /// another --listen or stop the other process".
    public let reason: String
    /// The error the service threw, if any.
    public let underlying: (any Error)?

    /// `service` could not start for `reason`.
    init(_ service: SupernodeService, _ reason: String, underlying: (any Error)? = nil) {
        self.service = service
        self.reason = reason
        self.underlying = underlying
    }

    /// `service` threw `error` while starting; a socket that could not be bound is named, with
    /// what to do (`address`: the one the service was given, when the error does not say).
    init(_ service: SupernodeService, starting error: any Error, address: String? = nil) {
        let failure = Self.bindFailure(error)
            ?? address.flatMap { a in Self.errnoCode(of: error).map { (address: "tcp " + a, tcp: true, code: $0) } }
        guard let failure else {
            self.init(service, "could not start: \(error)", underlying: error)
            return
        }
        let flag = Self.flag(service, tcp: failure.tcp)
        let advice = switch failure.code {
        case EADDRINUSE: "address in use; pick another \(flag) or stop the other process"
        case EADDRNOTAVAIL: "no such address on this host; give \(flag) one of its addresses"
        case EACCES: "permission denied (ports below 1024 need privileges); pick another \(flag)"
        default: String(cString: strerror(failure.code)) + "; check \(flag)"
        }
        self.init(service, "could not bind \(failure.address): \(advice)", underlying: error)
    }

    /// The service and the reason: "CHECKPOINT could not bind udp 127.0.0.1:7400: address in use; ...".
    public var description: String { "\(service) \(reason)" }

    /// The address (with its transport), and the errno, of a service's bind failure.
    private static func bindFailure(_ error: any Error) -> (address: String, tcp: Bool, code: Int32)? {
        switch error {
        case STUNPairServerError.bindFailed(let address, let underlying):
            return errnoCode(of: underlying).map { ("udp \(address)", false, $0) }
        case CheckpointTCPError.listenFailed(let address, let code):
            return ("tcp \(address)", true, code)
        case RelayServerError.bindFailed(let address, let transport, let underlying):
            return errnoCode(of: underlying).map { ("\(transport) \(address)", transport == .tcp, $0) }
        default:
            return nil
        }
    }

    /// The errno of a POSIX or SwiftNIO error.
    private static func errnoCode(of error: any Error) -> Int32? {
        switch error {
        case let e as POSIXError: return e.code.rawValue
        case let e as IOError: return e.errnoCode
        default: return nil
        }
    }

    /// The `peerway supernode` option that sets the address of `service` that failed.
    private static func flag(_ service: SupernodeService, tcp: Bool) -> String {
        switch service {
        case .checkpoint: return tcp ? "--tcp-listen" : "--listen"
        case .relay: return tcp ? "--relay-tcp-listen" : "--relay-listen"
        case .stun: return "--stun-listen or --stun-alternate"
        case .admin: return "--admin-listen"
        case .cluster: return "--cluster-listen"
        case .dataDirectory, .index: return "the address"  // they bind nothing
        }
    }
}
