"""The skeleton every spatialq node shares: a lifecycle node that can start itself (unattended robots
have no lifecycle manager), declares its parameters once, validates them at configure (a bad one fails
configure with one line, in the log and on /diagnostics, instead of crashing), and reports on a timer."""

from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from ..errors import SpatialqError
from .parameters import Spec, declare, read_parameters
from .qos import OUTPUT_QOS


class AutostartNode(LifecycleNode):
    PARAMETERS: tuple[Spec, ...] = ()  # each node's own, with `autostart` and `diagnostics_period`
    configure_error = ""  # why the last configure failed, one line; "" when it did not

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        declare(self, self.PARAMETERS)
        self.params: dict = {}
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)

    def start(self) -> None:
        """Call at the end of the subclass's __init__: the diagnostics timer, then configure + activate when
        the `autostart` parameter says so."""
        self.create_timer(self.get_parameter("diagnostics_period").value, self.publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        if self.get_parameter("autostart").value:
            self.trigger_configure()
            if self.state == "inactive":
                self.trigger_activate()

    @property
    def state(self) -> str:
        return self._state_machine.current_state[1]

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.params = read_parameters(self, self.PARAMETERS)
            self.configure(self.params)
        except SpatialqError as exc:
            self.configure_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.configure_error = ""
        return TransitionCallbackReturn.SUCCESS

    def configure(self, params: dict) -> None:
        """The node's own configure, from validated parameters; raise SpatialqError to fail it."""
        raise NotImplementedError

    def publish_diagnostics(self) -> None:
        raise NotImplementedError

    def announce_diagnostics(self, timeout: float) -> bool:
        """Publish /diagnostics now and wait, at most `timeout` s, until a subscriber has acknowledged it: for a
        process about to exit (autostart failed), whose timer never fires and whose last message would reach no
        one still being discovered. False when no subscriber matched or acknowledged in time."""
        end = time.monotonic() + timeout
        while self.diagnostics_pub.get_subscription_count() == 0:
            if time.monotonic() >= end:
                return False
            time.sleep(0.02)
        self.publish_diagnostics()
        return self.diagnostics_pub.wait_for_all_acked(Duration(seconds=max(0.0, end - time.monotonic())))
