"""The navigation bar: one tab per screen; F2..F6 switch too (bindings live on the app)."""

from __future__ import annotations

from textual.widgets import Tab, Tabs

NAV = (("characters", "Characters", "F2"), ("chat", "Chat", "F3"), ("annotate", "Annotate", "F4"),
       ("train", "Train", "F5"), ("evaluate", "Evaluate", "F6"))


class NavTabs(Tabs):
    """Tabs that never take focus (keys stay with the screen); a click switches the screen."""

    can_focus = False

    def __init__(self, active: str):
        super().__init__(*(Tab(f"{label} {key}", id=f"nav-{mode}") for mode, label, key in NAV), active=f"nav-{active}")
        self.mode = active

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        event.stop()
        mode = event.tab.id.removeprefix("nav-") if event.tab and event.tab.id else self.mode
        if mode != self.mode:
            self.app.action_go(mode)
            self.active = f"nav-{self.mode}"  # this screen's tab stays its own
