#if canImport(Glibc)
import Glibc
#endif
import CPeerwayLinux
import Foundation
import PeerwayCheckpoint
import PeerwaySTUN

/// Percentile `q` (0-1) of sorted microsecond samples.
func percentile(_ sorted: [UInt32], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))])
}

extension CheckpointLoad {
    /// Runs the phases (see CheckpointBenchRun.swift) and returns the figures.
    mutating func run() -> CheckpointBenchResult {
        let server = c.serverPID.map { ProcessSampler(pid: $0) }
        let generator = ProcessSampler(pid: getpid())
        result.server = c.server.description
        result.peers = n
        result.sockets = socketCount
        result.keepaliveSeconds = c.keepaliveSeconds
        result.messagePairs = min(c.messagePairs, n / 2)
        result.messageWindow = c.window
        result.messageRate = c.messageRate
        if let m = server?.memoryKiB() { result.serverRSSBeforeKiB = m.rss }

        let start = monotonicNow()
        let deadline = start + UInt64(c.deadline * 1e9)
        keepaliveStart = start
        var phaseStart = start
        var phaseServerCPU = server?.cpuSeconds() ?? 0
        var phaseGeneratorCPU = generator.cpuSeconds() ?? 0
        var progressCPU = CPUMeter(server)
        var nextProgress = start + UInt64(c.progressSeconds * 1e9)
        var nextMaintenance = start
        var lastProgressAt = start
        var lastProgressRegistered = 0, lastProgressAcks = 0, lastProgressDelivered = 0
        var acksAtPhaseStart = 0, sentAtPhaseStart = 0, messagesSentAtPhaseStart = 0
        var tags = [UInt32](repeating: 0, count: 256)
        preparePairs()

        /// CPU percent of (server, generator) since the phase began, and restarts the counts.
        func phaseCPU(_ now: UInt64) -> (Double, Double) {
            let seconds = Double(now - phaseStart) / 1e9
            let s = server?.cpuSeconds(), g = generator.cpuSeconds()
            defer {
                phaseServerCPU = s ?? 0
                phaseGeneratorCPU = g ?? 0
            }
            guard seconds > 0 else { return (-1, -1) }
            return (s.map { 100 * ($0 - phaseServerCPU) / seconds } ?? -1, g.map { 100 * ($0 - phaseGeneratorCPU) / seconds } ?? -1)
        }

        c.progress("registering \(n) peers over \(socketCount) sockets (127.2.0.1-\(STUNAddress(ip: .v4(socketIPs.last ?? 0), port: 0).ipString)), at most \(min(c.handshakesInFlight, socketCount)) in flight, keepalive every \(c.keepaliveSeconds) s")
        while phase != .done {
            let now = monotonicNow()
            if now >= deadline {
                result.stoppedByDeadline = true
                c.progress("overall deadline of \(c.deadline) s reached in phase \(phase.rawValue): stopping")
                break
            }
            startHandshakes(now: now)
            switch phase {
            case .registering:
                let timedOut = now - phaseStart > UInt64(c.registerTimeout * 1e9)
                if registered == n || (activeHandshakes == 0 && idleSockets.isEmpty) || timedOut {
                    if timedOut { c.progress("registration timeout of \(c.registerTimeout) s: continuing with \(registered) peers") }
                    let end = registered == n ? lastRegistrationAt : now
                    result.registered = registered
                    result.registerSeconds = Double(end - phaseStart) / 1e9
                    result.registrationsPerSecond = result.registerSeconds > 0 ? Double(registered) / result.registerSeconds : 0
                    (result.registerServerCPUPercent, result.registerGeneratorCPUPercent) = phaseCPU(now)
                    if let m = server?.memoryKiB() {
                        result.serverRSSAfterKiB = m.rss
                        result.serverHWMKiB = m.hwm
                        if result.serverRSSBeforeKiB >= 0, registered > 0 {
                            result.serverBytesPerPeer = Double(m.rss - result.serverRSSBeforeKiB) * 1024 / Double(registered)
                        }
                    }
                    c.progress(String(format: "registered %d peers in %.1f s (%.0f/s); steady keepalives for %.0f s", registered,
                                      result.registerSeconds, result.registrationsPerSecond, c.duration))
                    phase = .steady
                    phaseStart = now
                    acksAtPhaseStart = keepaliveAcks
                    sentAtPhaseStart = keepalivesSent
                    recordKeepaliveLatency = true
                }
            case .steady:
                if now - phaseStart >= UInt64(c.duration * 1e9) {
                    let seconds = Double(now - phaseStart) / 1e9
                    result.steadySeconds = seconds
                    result.keepalivesSent = keepalivesSent - sentAtPhaseStart
                    result.keepaliveAcks = keepaliveAcks - acksAtPhaseStart
                    result.keepaliveAcksPerSecond = Double(result.keepaliveAcks) / seconds
                    result.keepalivesExpectedPerSecond = Double(registered) / Double(c.keepaliveSeconds)
                    (result.steadyServerCPUPercent, result.steadyGeneratorCPUPercent) = phaseCPU(now)
                    recordKeepaliveLatency = false
                    keepaliveLatencies.sort()
                    result.keepaliveP50Microseconds = percentile(keepaliveLatencies, 0.5)
                    result.keepaliveP99Microseconds = percentile(keepaliveLatencies, 0.99)
                    keepaliveLatencies = []
                    phaseStart = now
                    acksAtPhaseStart = keepaliveAcks
                    messagesSentAtPhaseStart = messagesSent
                    if pairs > 0 && c.messageDuration > 0 {
                        phase = .messaging
                        c.progress("messages between \(pairs) pairs for \(c.messageDuration) s, window \(c.window), "
                                   + (c.messageRate > 0 ? "\(c.messageRate)/s" : "unpaced"))
                        nextMaintenance = now
                    } else {
                        phase = .done
                    }
                }
            case .messaging:
                if c.messageRate > 0 { paceMessages(now: now, since: phaseStart, sentBefore: messagesSentAtPhaseStart) }
                if now - phaseStart >= UInt64(c.messageDuration * 1e9) {
                    let seconds = Double(now - phaseStart) / 1e9
                    result.messageSeconds = seconds
                    result.messagesSent = messagesSent
                    result.messagesDelivered = messagesDelivered
                    result.messagesFailed = messagesFailed
                    result.messagesTimedOut = messagesTimedOut
                    result.messagesRefused = messagesRefused
                    result.messagesPerSecond = Double(messagesDelivered) / seconds
                    result.messageKeepaliveAcksPerSecond = Double(keepaliveAcks - acksAtPhaseStart) / seconds
                    (result.messageServerCPUPercent, result.messageGeneratorCPUPercent) = phaseCPU(now)
                    messageLatencies.sort()
                    result.messageP50Microseconds = percentile(messageLatencies, 0.5)
                    result.messageP99Microseconds = percentile(messageLatencies, 0.99)
                    phase = .done
                }
            case .done:
                break
            }
            sweepKeepalives(now: now)
            if now >= nextMaintenance {
                retransmitHandshakes(now: now)
                if pairs > 0 && (phase == .messaging || messageSentAt.contains(where: { $0 != 0 })) { maintainMessages(now: now) }
                nextMaintenance = now + 100_000_000
            }
            if now >= nextProgress {
                let seconds = Double(now - lastProgressAt) / 1e9
                let cpu = progressCPU.percent()
                let rss = server?.memoryKiB().map { String(format: "  server RSS %.0f MiB", Double($0.rss) / 1024) } ?? ""
                let cpuText = cpu >= 0 ? String(format: "  server CPU %.0f%%", cpu) : ""
                switch phase {
                case .registering:
                    c.progress(String(format: "  %.0fs registered %d/%d  %.0f/s  in flight %d  step %.0f ms  retransmits %d%@%@",
                                      Double(now - start) / 1e9, registered, n, Double(registered - lastProgressRegistered) / seconds,
                                      activeHandshakes, stepNanos / 1e6, result.handshakeRetransmits + result.registerRetransmits, cpuText as NSString, rss as NSString))
                default:
                    c.progress(String(format: "  %.0fs %@: keepalive acks %.0f/s  messages %.0f/s%@%@",
                                      Double(now - start) / 1e9, phase.rawValue as NSString, Double(keepaliveAcks - lastProgressAcks) / seconds,
                                      Double(messagesDelivered - lastProgressDelivered) / seconds, cpuText as NSString, rss as NSString))
                }
                lastProgressAt = now
                lastProgressRegistered = registered
                lastProgressAcks = keepaliveAcks
                lastProgressDelivered = messagesDelivered
                nextProgress = now + UInt64(c.progressSeconds * 1e9)
            }
            flush()
            let ready = tags.withUnsafeMutableBufferPointer { t in
                cpeerway_epoll_wait_tags(epfd, t.baseAddress, Int32(t.count), 1)
            }
            if ready > 0 {
                let received = monotonicNow()
                for i in 0..<Int(ready) {
                    receive(Int(tags[i]), now: received)
                }
                flush()
            }
        }
        if phase == .registering || result.registered == 0 { result.registered = registered }
        if let m = server?.memoryKiB() { result.serverHWMKiB = m.hwm }
        return result
    }
}
