/// The version of this build of Vouch: what `vouch --version` prints and what agents report to
/// the CA (`AgentReport.agent_version`), so `vouch fleet list` shows which agents run old code.
public enum VouchVersion {
    public static let current = "0.18.0"
}
