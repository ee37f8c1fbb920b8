"""The sessionizer's Faust app at module level, for Faust's own command line:

    faust -A pipeline.sessionizer worker -l info    # the same worker as `jump sessionizer`
    faust -A pipeline.sessionizer tables            # the app's tables (no broker needed)
    faust -A pipeline.sessionizer agents

Settings come from the environment, as for `jump sessionizer` -- the documented command, which
also waits for the broker with a line every few seconds and turns a bad setting into one line
(exit status 2). The app is built by runtime.faust_app.create_sessionizer_app either way, and
prepares its worker when it starts (topics, producer options, metrics: PipelineApp).
"""

from pipeline.config import Settings
from pipeline.runtime.faust_app import create_sessionizer_app

settings = Settings.from_env()
app = create_sessionizer_app(settings)
