/// Placeholder until policy hot reload (PolicyReload.swift) is merged: the integrator
/// deletes this file then. Refuses honestly instead of pretending to reload.
extension Pipeline {
    public func reloadPolicies() async throws(PipelineRequestError) -> ReloadReport {
        throw PipelineRequestError(code: .unavailable, message: "policy reload is not available in this build")
    }
}
