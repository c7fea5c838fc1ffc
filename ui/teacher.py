"""Teacher mode: on a shared Space only the teacher changes the class's training run.

With TEACHER_PASSWORD set (or dashboard.py --teacher-password), starting, pausing, resuming, stopping, resetting and
promoting need it; students still watch the run live, chat, tokenize and visualise. Without it (a student's own
laptop) everything stays open. The password is compared in constant time and never written to a log, a status or
the page.
"""

import hmac
import os

from gpt_mini.errors import UserError

ENV_NAME = "TEACHER_PASSWORD"


class TeacherGate:
    def __init__(self, password: str | None = None):
        """password: None reads TEACHER_PASSWORD from the environment; '' turns teacher mode off."""
        secret = os.environ.get(ENV_NAME, "") if password is None else password
        self._secret = secret.encode("utf-8")

    @property
    def enabled(self) -> bool:
        return bool(self._secret)

    def check(self, given: str | None) -> None:
        """Raise UserError unless teacher mode is off or `given` is the password."""
        if not self.enabled:
            return
        if not given:
            raise UserError("只有老师可以控制训练：请在“教师登录”里输入密码",
                            "only the teacher controls training: enter the password under teacher login")
        if not hmac.compare_digest(str(given).encode("utf-8"), self._secret):
            raise UserError("教师密码不对，什么都没有改变", "wrong teacher password; nothing was changed")

    def allows(self, given: str | None) -> bool:
        """True when check(given) would pass."""
        try:
            self.check(given)
        except UserError:
            return False
        return True

    def __repr__(self) -> str:  # never show the secret, even in a debugger or a log line
        return f"TeacherGate(enabled={self.enabled})"
