import Testing
@testable import CAMFACore

/// UserState keeps its MFA part behind a shared reference; these pin down that it still
/// behaves as a value, which checkpoint snapshots taken while the engine runs rely on.
@Suite struct UserStateTests {
    let challenge = PendingChallenge(flow: "f", id: "c1", methods: [], since: 10, expiresAt: 20)

    @Test func aCopyIsNotChangedByLaterChangesToTheOriginal() {
        var user = UserState(lastSeen: 1)
        user.pending = [challenge]
        let snapshot = user
        user.pending = []
        user.lastVerified = 15
        user.lastVerifiedChallenge = "c1"
        #expect(snapshot.pending == [challenge])
        #expect(snapshot.lastVerified == nil)
        #expect(snapshot.lastVerifiedChallenge == nil)
        #expect(user.pending.isEmpty)
        #expect(user.lastVerified == 15)
        #expect(snapshot != user)
    }

    @Test func clearingEveryMFAFieldMakesTheUserEqualToOneThatNeverHadAny() {
        var user = UserState(lastSeen: 1)
        user.pending = [challenge]
        user.lastVerified = 15
        #expect(user != UserState(lastSeen: 1))
        user.pending = []
        user.lastVerified = nil
        #expect(user == UserState(lastSeen: 1))
    }
}
