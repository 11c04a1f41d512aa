import Foundation
import Testing
import CAMFATestSupport

/// Locates fixtures in the shared test-data folder beside the package
/// (`<package>/../shared/testdata`). They are not part of the repository, so a fresh
/// clone has none: tests then skip, except under CI where missing data is a failure.
enum SharedTestData {
    static func url(_ relativePath: String) -> URL? { sharedTestData(relativePath) }

    /// True when a test needing `relativePath` should run: present, or missing under CI
    /// (where the test body records the failure).
    static func shouldRun(_ relativePath: String) -> Bool { url(relativePath) != nil || isCI }

    /// The fixture's URL; when missing, records an issue under CI, else prints why the
    /// test does nothing.
    static func require(_ relativePath: String) -> URL? {
        if let u = url(relativePath) { return u }
        if isCI {
            Issue.record("shared test data \(relativePath) is missing (expected under ../shared/testdata)")
        } else {
            print("skipping: shared test data \(relativePath) not found under ../shared/testdata")
        }
        return nil
    }
}
