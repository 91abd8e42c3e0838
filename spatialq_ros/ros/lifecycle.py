"""Lifecycle nodes that can start themselves: unattended robots have no lifecycle manager to do it."""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode


class AutostartNode(LifecycleNode):
    configure_error = ""  # why the last configure failed, one line; "" when it did not

    @property
    def state(self) -> str:
        return self._state_machine.current_state[1]

    def autostart(self) -> None:
        """configure + activate when the `autostart` parameter says so (call at the end of __init__)."""
        if self.get_parameter("autostart").value:
            self.trigger_configure()
            if self.state == "inactive":
                self.trigger_activate()
