"""Publishing: push a run or model folder to the Hub in one commit, its model card, and a Space.

python -m hub.push RUN_OR_MODEL_DIR --repo USER/NAME [--revision B] [--tag T] [--dry-run OUT]
python -m hub.space --repo USER/SPACE --model USER/NAME [--hardware cpu-basic]
"""

from emotion.errors import RunFolderError
from hub.errors import HubAuthError, HubError

__all__ = ["HubAuthError", "HubError", "RunFolderError"]
