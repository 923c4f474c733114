/// Whether a loop's failure only means the agent is stopping (Ctrl-C, SIGTERM, the end of
/// quickstart): its task was cancelled, and whatever was in flight (a sleep, an RPC) threw for
/// that reason. The loops end quietly then instead of logging a failure.
func isShutdown(_ error: any Error) -> Bool {
    error is CancellationError || Task.isCancelled
}
