/// A readable rendering of one stored partition checkpoint (`camfa state dump`), built
/// from the stored rows alone: the metadata carries each slot's window spec, so no policy
/// files are needed. Everything is written in a fixed order (keyspaces and slots in stored
/// layout order, keys and users in the store's byte order), so equal engine state gives
/// byte-identical output — what the crash tests compare.
extension PartitionState {
    public static func writeDump(
        metadata: [UInt8], entries: [(keyspace: String, key: String, value: [UInt8])],
        users: [(user: String, value: [UInt8])], onlyKey: String? = nil, to w: inout JSONWriter
    ) throws(BinaryDecodingError) {
        let layout = try readLayout(metadata)
        w.field("watermark", layout.watermark)
        w.key("keyspaces")
        w.beginArray()
        for ks in layout.keyspaces {
            w.beginObject()
            w.field("key", ks.text)
            w.key("entries")
            w.beginArray()
            for e in entries where e.keyspace == ks.text && (onlyKey == nil || e.key == onlyKey) {
                var r = BinaryReader(e.value)
                let record = try readRecord(&r)
                try r.expectEnd()
                w.beginObject()
                w.field("key", e.key)
                w.key("slots")
                w.beginObject()
                for (i, window) in record.windows.enumerated() {
                    guard let window else { continue }
                    w.key(i < ks.descriptors.count ? ks.descriptors[i] : "#\(i)")
                    // Version 1 metadata has no specs: the window cannot be read without them.
                    if i < ks.specs.count { w.value(window.current(spec: ks.specs[i])) } else { w.null() }
                }
                w.endObject()
                w.endObject()
            }
            w.endArray()
            w.endObject()
        }
        w.endArray()
        w.key("users")
        w.beginArray()
        for u in users where onlyKey == nil || u.user == onlyKey {
            var r = BinaryReader(u.value)
            let user = try readUser(&r)
            try r.expectEnd()
            w.beginObject()
            w.field("id", u.user)
            w.field("lastSeen", user.lastSeen)
            w.key("lastLocation")
            if let l = user.lastLocation {
                w.beginObject()
                w.field("latitude", l.point.latitude)
                w.field("longitude", l.point.longitude)
                w.field("accuracyRadiusKm", l.point.accuracyRadiusKm)
                w.field("time", l.point.time)
                w.key("city")
                if let c = l.city { w.value(c) } else { w.null() }
                w.key("country")
                if let c = l.country { w.value(c) } else { w.null() }
                w.endObject()
            } else {
                w.null()
            }
            w.key("pending")
            w.beginArray()
            for p in user.pending {
                w.beginObject()
                w.field("flow", p.flow)
                w.field("id", p.id)
                w.key("methods")
                w.beginArray()
                for m in p.methods { w.value(m.rawValue) }
                w.endArray()
                w.field("since", p.since)
                w.field("expiresAt", p.expiresAt)
                if let app = p.app { w.field("app", app) }
                w.endObject()
            }
            w.endArray()
            w.key("lastVerified")
            if let v = user.lastVerified { w.value(v) } else { w.null() }
            // Never the sealed secrets: a dump is for reading, and may be pasted anywhere.
            if !user.factors.isEmpty {
                w.key("factors")
                w.beginArray()
                for f in user.factors {
                    w.beginObject()
                    w.field("kind", f.kind.rawValue)
                    w.field("confirmed", f.confirmed)
                    w.field("enrolledAt", f.enrolledAt)
                    w.endObject()
                }
                w.endArray()
            }
            if !user.devices.isEmpty { w.field("trustedDevices", Int64(user.devices.count)) }
            let v = user.verification
            if v != VerificationCounters() {
                w.field("failures", Int64(v.failures))
                w.key("lockedOutUntil")
                if let t = v.lockedOutUntil { w.value(t) } else { w.null() }
            }
            w.endObject()
        }
        w.endArray()
    }
}

extension Aggregation {
    /// The name stored in checkpoint metadata; stable across releases (never reorder-based).
    public var storedName: String {
        switch self {
        case .count: "count"
        case .sum: "sum"
        case .min: "min"
        case .max: "max"
        case .avg: "avg"
        case .distinctCount: "distinctCount"
        case .first: "first"
        case .last: "last"
        case .previous: "previous"
        case .profile: "profile"
        case .risk: "risk"
        }
    }
}
