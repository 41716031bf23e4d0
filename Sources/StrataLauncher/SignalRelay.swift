#if canImport(Glibc)
import Glibc
#endif
import CLauncher

/// Signals sent to strata while it runs a container reach the container's process (the C side
/// is `relay.c`). `run` and `exec` begin the relay before they touch the store: a signal that
/// comes before the process exists cancels the start (`checkNotCancelled`, between the steps
/// that make the container) instead of killing strata half-way and leaving a container,
/// mount and cgroups behind; a second one is fatal at once. Once the process exists, every
/// relayed signal goes to it (`Launcher.supervise`).
package enum SignalRelay {
    /// From now on SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH are caught.
    package static func begin() { strata_relay_install() }

    /// Relayed signals go to `pid` from now on (SIGWINCH resizes `master`, a pty master or -1),
    /// the one kept before it existed included; `pid` 0: to nothing (kept again).
    static func target(_ pid: pid_t, master: Int32) { strata_relay_to(pid, master) }

    /// Back to the default actions.
    package static func end() { strata_relay_uninstall() }

    /// The last signal (other than SIGWINCH) passed on to a process since the last call, or 0;
    /// forgotten here. A build asks after each RUN: a Ctrl-C for the step is one for the build.
    package static func takePassedSignal() -> Int32 { strata_relay_take_passed() }

    /// The signal kept while no process was there to take it (0: none).
    package static var pending: Int32 { strata_relay_pending() }

    /// Throws when a signal came before the container's process exists: what `what` names
    /// is not to be started. Exit code 128 + the signal, as a shell reports it.
    package static func checkNotCancelled(_ what: @autoclosure () -> String) throws {
        let s = strata_relay_pending()
        guard s != 0 else { return }
        throw LaunchFailure(exitCode: 128 + s, message: "\(what()) was cancelled by signal \(s) before it started")
    }
}
