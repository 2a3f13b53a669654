import Foundation

#if canImport(Glibc)
import Glibc
#endif

/*
 Delay without netem: an NFQUEUE consumer that holds every queued packet for a fixed time, then
 accepts it. This kernel has no `tc netem` and no nftables `queue` expression (CONFIG_NFT_QUEUE
 is off), but the xtables NFQUEUE target and nfnetlink_queue are built in, so `iptables -j NFQUEUE`
 (iptables-nft, through nft_compat) queues packets and this consumer, speaking nfnetlink_queue
 over a raw netlink socket (no libnetfilter_queue), sets the verdicts. Measured on a veth pair:
 50 ms asked, 50.4 ms median UDP round trip added (one queue on the sending side).

 Wire format (include/uapi/linux/netfilter/nfnetlink_queue.h): netlink header (host order),
 nfgenmsg {family, version 0, res_id = queue number (big-endian)}, then attributes (host-order
 length/type, payload as the kernel defines it: the structs below are big-endian).
*/

/// Holds the packets of one NFQUEUE queue for a fixed delay, in the namespace it runs in.
public struct LabDelayQueue: Sendable {
    /// The queue number `iptables -j NFQUEUE --queue-num` uses.
    public var queue: UInt16
    /// How long every packet is held.
    public var delay: TimeInterval

    /// Longest allowed delay, milliseconds.
    public static var maximumDelayMilliseconds: Int { LabLimits.delayRange.upperBound }
    /// Receive buffer for the netlink socket: queued packets' metadata arrive in bursts.
    static let receiveBufferBytes: Int32 = 4 << 20
    /// Largest netlink datagram read at once.
    static let readSize = 65_536

    static let netlinkNetfilter: Int32 = 12
    static let subsystemQueue: UInt16 = 3
    static let messagePacket: UInt16 = 0, messageVerdict: UInt16 = 1, messageConfig: UInt16 = 2
    static let attributeConfigCommand: UInt16 = 1, attributeConfigParams: UInt16 = 2
    static let attributePacketHeader: UInt16 = 1, attributeVerdictHeader: UInt16 = 2
    static let commandBind: UInt8 = 1
    static let copyMeta: UInt8 = 1
    static let verdictAccept: UInt32 = 1
    static let flagRequest: UInt16 = 1, flagAck: UInt16 = 4

    public init(queue: UInt16, delay: TimeInterval) {
        self.queue = queue
        self.delay = delay
    }

    /// One nfnetlink_queue message: header, nfgenmsg and the attributes.
    static func message(type: UInt16, flags: UInt16, sequence: UInt32, queue: UInt16, attributes: [(UInt16, [UInt8])]) -> [UInt8] {
        var body: [UInt8] = [0, 0, UInt8(queue >> 8), UInt8(queue & 0xff)]  // AF_UNSPEC, version 0, res_id
        for (type, value) in attributes {
            let length = UInt16(4 + value.count)
            body += withUnsafeBytes(of: length) { Array($0) } + withUnsafeBytes(of: type) { Array($0) } + value
            body += [UInt8](repeating: 0, count: (4 - Int(length) % 4) % 4)
        }
        var header: [UInt8] = []
        header += withUnsafeBytes(of: UInt32(16 + body.count)) { Array($0) }
        header += withUnsafeBytes(of: (subsystemQueue << 8) | type) { Array($0) }
        header += withUnsafeBytes(of: flags) { Array($0) }
        header += withUnsafeBytes(of: sequence) { Array($0) }
        header += withUnsafeBytes(of: UInt32(0)) { Array($0) }
        return header + body
    }

    static func bigEndianBytes(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    /// The packet ids of the packet messages in one netlink datagram.
    static func packetIDs(in data: [UInt8]) -> [UInt32] {
        func u16(_ at: Int) -> UInt16 { UInt16(data[at]) | UInt16(data[at + 1]) << 8 }
        func u32(_ at: Int) -> UInt32 { data[at..<at + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        var ids: [UInt32] = []
        var offset = 0
        while offset + 16 <= data.count {
            let length = Int(u32(offset))
            guard length >= 16, offset + length <= data.count else { break }
            if u16(offset + 4) == (subsystemQueue << 8) | messagePacket {
                var a = offset + 20
                while a + 4 <= offset + length {
                    let attributeLength = Int(u16(a))
                    guard attributeLength >= 4 else { break }
                    if u16(a + 2) & 0x7fff == attributePacketHeader, a + 8 <= data.count {
                        ids.append(data[a + 4..<a + 8].reduce(0) { $0 << 8 | UInt32($1) })
                    }
                    a += (attributeLength + 3) & ~3
                }
            }
            offset += (length + 3) & ~3
        }
        return ids
    }

    /// Binds the queue and delays its packets until the process is killed.
    public func run() throws(LabError) -> Never {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue), Self.netlinkNetfilter)
        guard fd >= 0 else { throw .commandFailed(command: "socket(AF_NETLINK)", status: errno, output: String(cString: strerror(errno))) }
        var size = Self.receiveBufferBytes
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        // No bind(): a netlink socket binds itself (kernel-assigned port id) on its first send.
        var sequence: UInt32 = 0
        func send(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) } }
        var buffer = [UInt8](repeating: 0, count: Self.readSize)
        sequence += 1
        send(Self.message(type: Self.messageConfig, flags: Self.flagRequest | Self.flagAck, sequence: sequence, queue: queue,
                          attributes: [(Self.attributeConfigCommand, [Self.commandBind, 0, 0, 0])]))
        _ = recv(fd, &buffer, buffer.count, 0)
        sequence += 1
        send(Self.message(type: Self.messageConfig, flags: Self.flagRequest | Self.flagAck, sequence: sequence, queue: queue,
                          attributes: [(Self.attributeConfigParams, Self.bigEndianBytes(0) + [Self.copyMeta])]))
        _ = recv(fd, &buffer, buffer.count, 0)

        var held: [(due: Date, id: UInt32)] = []  // in arrival order, so due times ascend
        var next = 0
        while true {
            let timeout = next < held.count ? max(0, Int32(held[next].due.timeIntervalSinceNow * 1000)) : 1000
            var pollfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pollfd, 1, timeout) > 0 {
                let n = recv(fd, &buffer, buffer.count, 0)
                if n > 0 {
                    let due = Date().addingTimeInterval(delay)
                    for id in Self.packetIDs(in: Array(buffer[0..<n])) { held.append((due, id)) }
                }
            }
            let now = Date()
            while next < held.count, held[next].due <= now {
                sequence += 1
                send(Self.message(type: Self.messageVerdict, flags: Self.flagRequest, sequence: sequence, queue: queue,
                                  attributes: [(Self.attributeVerdictHeader, Self.bigEndianBytes(Self.verdictAccept) + Self.bigEndianBytes(held[next].id))]))
                next += 1
            }
            if next == held.count {
                held.removeAll(keepingCapacity: true)
                next = 0
            }
        }
    }
}
