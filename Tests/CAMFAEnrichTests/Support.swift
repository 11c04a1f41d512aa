import Foundation
import Testing
import CAMFATestSupport

/// ../shared/testdata relative to the package root: fixtures that are never committed.
/// Absent on a user's fresh clone (tests skip), required under CI=true (tests fail).
enum TestData {
    static let root: String? = sharedTestData("uap-core/regexes.yaml") != nil ? sharedTestDataRoot.path : nil

    /// Run when the data is there, or under CI so that its absence is a failure.
    static let shouldRun = root != nil || isCI

    static let skipMessage =
        "../shared/testdata not found next to the package: fixture tests skipped (CI=true makes this a failure)"

    /// The fixture directory; records a failure (CI) when it is missing.
    static func require(_ sub: String) throws -> String {
        let dir = try #require(root, "test data missing: ../shared/testdata is required under CI=true")
        return dir + "/" + sub
    }
}
