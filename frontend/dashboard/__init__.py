"""The analytics dashboard's pages (`frontend.analytics_app`): each draws itself with ``render(config)``."""
