import CAMFACore
import Testing

@Suite("Geo velocity")
struct GeoVelocityTests {
    static let hour: Int64 = 3_600_000
    static let paris = (lat: 48.8566, lon: 2.3522)
    static let tokyo = (lat: 35.6762, lon: 139.6503)

    @Test func parisToTokyoInAnHourIsImpossibleTravel() {
        let a = GeoPoint(latitude: Self.paris.lat, longitude: Self.paris.lon, accuracyRadiusKm: 50, time: 0)
        let b = GeoPoint(latitude: Self.tokyo.lat, longitude: Self.tokyo.lon, accuracyRadiusKm: 100, time: Self.hour)
        let v = GeoVelocity.between(a, b)
        // Paris–Tokyo great circle is about 9,710 km.
        #expect(abs(v.distanceKm - 9712) < 15)
        #expect(v.elapsedSeconds == 3600)
        #expect(abs(v.speedKmh - v.distanceKm) < 1e-6)
        #expect(abs(v.minimumDistanceKm - (v.distanceKm - 150)) < 1e-9)
        #expect(v.minimumSpeedKmh > 1000)
    }

    @Test func sameCityTwiceIsStandingStill() {
        let a = GeoPoint(latitude: Self.paris.lat, longitude: Self.paris.lon, accuracyRadiusKm: 20, time: 0)
        let b = GeoPoint(latitude: Self.paris.lat, longitude: Self.paris.lon, accuracyRadiusKm: 20, time: 5 * 60_000)
        let v = GeoVelocity.between(a, b)
        #expect(v.distanceKm == 0)
        #expect(v.speedKmh == 0)
        #expect(v.minimumSpeedKmh == 0)
    }

    @Test func accuracyRadiusAbsorbsSmallJumps() {
        // Paris centre to Versailles (~17 km) one minute apart: 1,000+ km/h on the raw
        // centres, but both fixes are only good to 10 km, so it could be no trip at all.
        let a = GeoPoint(latitude: 48.8566, longitude: 2.3522, accuracyRadiusKm: 10, time: 0)
        let b = GeoPoint(latitude: 48.8049, longitude: 2.1204, accuracyRadiusKm: 10, time: 60_000)
        let v = GeoVelocity.between(a, b)
        #expect(v.distanceKm > 15 && v.distanceKm < 20)
        #expect(v.speedKmh > 900)
        #expect(v.minimumDistanceKm == 0)
        #expect(v.minimumSpeedKmh == 0)
    }

    @Test func simultaneousEventsInTwoPlacesAreInfinitelyFast() {
        let a = GeoPoint(latitude: 0, longitude: 0, time: 1000)
        let b = GeoPoint(latitude: 0, longitude: 1, time: 1000)
        #expect(GeoVelocity.between(a, b).speedKmh == .infinity)
        #expect(GeoVelocity.between(a, a).speedKmh == 0)
    }

    @Test func orderOfEventsDoesNotMatterAndAntipodesAreHalfTheEarth() {
        let a = GeoPoint(latitude: 10, longitude: 20, time: 10 * Self.hour)
        let b = GeoPoint(latitude: -10, longitude: -160, time: 0)
        let v = GeoVelocity.between(a, b)
        #expect(v == GeoVelocity.between(b, a))
        // Within a metre: degree-to-radian rounding alone costs ~0.1 m at this distance.
        #expect(abs(v.distanceKm - Double.pi * GeoVelocity.earthRadiusKm) < 1e-3)
        #expect(abs(v.speedKmh - v.distanceKm / 10) < 1e-9)
    }
}
