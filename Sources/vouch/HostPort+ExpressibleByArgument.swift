import ArgumentParser
import VouchAPI

extension HostPort: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}
