#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A located event: where (with MaxMind's accuracy radius) and when.
public struct GeoPoint: Sendable, Equatable {
    public var latitude: Double
    public var longitude: Double
    /// How far the true position may be from (latitude, longitude); 0 when exact.
    public var accuracyRadiusKm: Double
    /// Event time, epoch milliseconds.
    public var time: Int64

    public init(latitude: Double, longitude: Double, accuracyRadiusKm: Double = 0, time: Int64) {
        self.latitude = latitude
        self.longitude = longitude
        self.accuracyRadiusKm = accuracyRadiusKm
        self.time = time
    }
}

/// How fast a user would have had to travel between two located events.
///
/// The `minimum*` figures give the user the benefit of the doubt: both positions may be
/// off by their accuracy radius, so the shortest possible trip is the distance minus
/// both radii. Policies flag impossible travel on `minimumSpeedKmh`, so that two
/// logins geolocated to neighbouring cities of one metro area never look like a flight.
public struct GeoVelocity: Sendable, Equatable {
    /// Great-circle distance between the two centres.
    public var distanceKm: Double
    /// |b.time − a.time|: events can arrive out of order.
    public var elapsedSeconds: Double
    public var speedKmh: Double
    /// Distance minus both accuracy radii, floored at 0.
    public var minimumDistanceKm: Double
    public var minimumSpeedKmh: Double

    public init(distanceKm: Double, elapsedSeconds: Double, speedKmh: Double,
                minimumDistanceKm: Double, minimumSpeedKmh: Double) {
        self.distanceKm = distanceKm
        self.elapsedSeconds = elapsedSeconds
        self.speedKmh = speedKmh
        self.minimumDistanceKm = minimumDistanceKm
        self.minimumSpeedKmh = minimumSpeedKmh
    }

    /// Mean Earth radius (IUGG), the usual choice for haversine distances.
    public static let earthRadiusKm = 6371.0088

    /// Haversine distance and the implied speeds. With no time between the events, a
    /// non-zero distance is an infinite speed (two places at once) and a zero distance
    /// is speed 0, so the result is always comparable against a threshold and never NaN.
    public static func between(_ a: GeoPoint, _ b: GeoPoint) -> GeoVelocity {
        let distance = haversineKm(a.latitude, a.longitude, b.latitude, b.longitude)
        let minimum = max(0, distance - max(0, a.accuracyRadiusKm) - max(0, b.accuracyRadiusKm))
        let elapsed = Double(a.time > b.time ? a.time - b.time : b.time - a.time) / 1000
        return GeoVelocity(
            distanceKm: distance,
            elapsedSeconds: elapsed,
            speedKmh: speed(distance, elapsed),
            minimumDistanceKm: minimum,
            minimumSpeedKmh: speed(minimum, elapsed)
        )
    }

    private static func speed(_ km: Double, _ seconds: Double) -> Double {
        if seconds > 0 { return km / (seconds / 3600) }
        return km > 0 ? .infinity : 0
    }

    static func haversineKm(_ lat1: Double, _ lon1: Double, _ lat2: Double, _ lon2: Double) -> Double {
        let radians = Double.pi / 180
        let phi1 = lat1 * radians
        let phi2 = lat2 * radians
        let dPhi = (lat2 - lat1) * radians
        let dLambda = (lon2 - lon1) * radians
        let s1 = sin(dPhi / 2)
        let s2 = sin(dLambda / 2)
        let h = s1 * s1 + cos(phi1) * cos(phi2) * s2 * s2
        // atan2 rather than asin(√h): asin loses precision as h nears 1 (antipodes), and
        // the clamp keeps rounding from pushing h outside [0, 1].
        let c = min(1, max(0, h))
        return 2 * earthRadiusKm * atan2(c.squareRoot(), (1 - c).squareRoot())
    }
}
