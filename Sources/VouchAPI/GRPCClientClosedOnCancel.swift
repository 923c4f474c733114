import GRPCCore

/// Runs `body` with a client whose connections close once it returns, like grpc-swift's
/// `withGRPCClient`, but cancellation cannot leave an RPC waiting forever.
///
/// grpc-swift-nio-transport queues an RPC that starts before the connection is ready, and when
/// the channel is still idle it queues it without looking again at cancellation: an RPC whose
/// cancellation arrives just before it joins the queue stays there. Only the channel's connection
/// loop can then fail it (by closing), but `withGRPCClient` cancels that loop together with the
/// caller, so the call never returns and its deadline, itself a cancellation, cannot end it. A
/// Ctrl-C during the agent's first CRL fetch hung `vouch quickstart` that way.
///
/// Here the connection loop is not a child of the caller: cancelling the caller shuts the client
/// down, which makes the loop fail whatever is queued, and the loop itself is cancelled only once
/// `body` has returned (at once, as `withGRPCClient` does, when `body` failed or was cancelled).
func withGRPCClientClosedOnCancel<Transport: ClientTransport, Result: Sendable>(
    transport: Transport,
    _ body: (GRPCClient<Transport>) async throws -> Result
) async throws -> Result {
    let client = GRPCClient(transport: transport)
    // Unstructured on purpose: a child task would be cancelled together with the caller.
    let connections = Task { try await client.runConnections() }
    let outcome: Swift.Result<Result, any Error>
    do {
        outcome = .success(try await withTaskCancellationHandler {
            try await body(client)
        } onCancel: {
            client.beginGracefulShutdown()
        })
    } catch {
        outcome = .failure(Task.isCancelled ? CancellationError() : error)
    }
    client.beginGracefulShutdown()
    if case .failure = outcome { connections.cancel() }
    // Nor does a caller cancelled meanwhile wait for the connections to close gracefully.
    let connectionResult = await withTaskCancellationHandler {
        await connections.result
    } onCancel: {
        connections.cancel()
    }
    let value = try outcome.get()
    try connectionResult.get()
    return value
}
