extension PartitionState {
    /// This state under another policy set (a policy reload). When the statistics' layout
    /// is unchanged the state is kept as it is, pending changes included. Otherwise it goes
    /// through the checkpoint codec, which keeps every statistic whose descriptor (policy,
    /// statistic, window spec) still exists and drops the others; the result's next
    /// checkpoint is full, because its pending changes and slot layout no longer match
    /// what the store holds.
    public func migrated(to policySet: PolicySet) throws(BinaryDecodingError) -> PartitionState {
        if layout.map(\.keyText) == policySet.keyspaces.map(\.keyText),
           layout.map(\.slotDescriptors) == policySet.keyspaces.map(\.slotDescriptors) {
            // The sweep queue stays; the next sweep rebuilds it only if the options changed.
            return self
        }
        var state = try PartitionState(restoring: serialized(), policySet: policySet)
        state.needsFullCheckpoint = true
        return state
    }
}
