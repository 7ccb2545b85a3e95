"""Django, as a new user runs it: ``python -m mighty_patcher run manage.py runserver
--noreload`` on 127.0.0.1, a small project (one app, ``polls``, with a model, an admin, forms,
middleware and urls) made in a temporary directory, its files saved as an editor saves them
(in place, or written aside and renamed over), and every effect checked through real HTTP
requests. The edits Django cannot follow without a restart are checked in the reload lines
the server prints."""

from __future__ import annotations

import http.cookiejar
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from server import stop

from conftest import require

#: Django's line for each request served (or not found): left out of failure messages.
REQUEST_LINE = re.compile(r'^(\[\d\d/\w+/\d{4} [\d:]+\] "|Not Found: )')
#: Generous: waiting for an effect, never timing it. A missing effect fails after this long.
TIMEOUT = 60

FILES = {
    "manage.py": """
        import os
        import sys

        if __name__ == "__main__":
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
            from django.core.management import execute_from_command_line

            execute_from_command_line(sys.argv)
    """,
    "mysite/__init__.py": "",
    "mysite/settings.py": """
        from pathlib import Path

        BASE_DIR = Path(__file__).resolve().parent.parent
        SECRET_KEY = "only-for-tests"
        DEBUG = True
        ALLOWED_HOSTS = ["127.0.0.1"]
        INSTALLED_APPS = [
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "polls",
        ]
        MIDDLEWARE = [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "polls.middleware.StampMiddleware",
            "polls.middleware.timing",
        ]
        ROOT_URLCONF = "mysite.urls"
        TEMPLATES = [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [],
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ]
        DATABASES = {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}
        }
        PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
        USE_TZ = True
        STATIC_URL = "static/"
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
    """,
    "mysite/urls.py": """
        from django.contrib import admin
        from django.urls import include, path

        urlpatterns = [
            path("polls/", include("polls.urls")),
            path("admin/", admin.site.urls),
        ]
    """,
    "polls/__init__.py": "",
    "polls/models.py": """
        import datetime

        from django.contrib import admin
        from django.db import models
        from django.db.models.signals import post_save
        from django.dispatch import receiver
        from django.utils import timezone


        class Question(models.Model):
            question_text = models.CharField(max_length=200)
            pub_date = models.DateTimeField("date published", default=timezone.now)

            def __str__(self):
                return self.question_text

            @admin.display(boolean=True, ordering="pub_date", description="Published recently?")
            def was_published_recently(self):
                return self.pub_date >= timezone.now() - datetime.timedelta(days=1)

            @property
            def shout(self):
                return self.question_text.upper()


        class Choice(models.Model):
            question = models.ForeignKey(Question, on_delete=models.CASCADE)
            choice_text = models.CharField(max_length=200)
            votes = models.IntegerField(default=0)

            def __str__(self):
                return self.choice_text


        @receiver(post_save, sender=Question)
        def question_saved(sender, instance, **kwargs):
            pass
    """,
    "polls/migrations/__init__.py": "",
    "polls/migrations/0001_initial.py": """
        import django.db.models.deletion
        import django.utils.timezone
        from django.db import migrations, models


        class Migration(migrations.Migration):
            initial = True
            dependencies = []
            operations = [
                migrations.CreateModel(
                    name="Question",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("question_text", models.CharField(max_length=200)),
                        ("pub_date", models.DateTimeField(default=django.utils.timezone.now, verbose_name="date published")),
                    ],
                ),
                migrations.CreateModel(
                    name="Choice",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("choice_text", models.CharField(max_length=200)),
                        ("votes", models.IntegerField(default=0)),
                        ("question", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="polls.question")),
                    ],
                ),
            ]
    """,  # noqa: E501
    "polls/admin.py": """
        from django.contrib import admin

        from .models import Choice, Question


        class ChoiceInline(admin.TabularInline):
            model = Choice
            extra = 1


        @admin.register(Question)
        class QuestionAdmin(admin.ModelAdmin):
            list_display = ["question_text", "text_length"]
            inlines = [ChoiceInline]

            @admin.display(description="Length")
            def text_length(self, obj):
                return len(obj.question_text)
    """,
    "polls/forms.py": """
        from django import forms

        from .models import Question


        class ContactForm(forms.Form):
            name = forms.CharField(max_length=20)

            def clean_name(self):
                name = self.cleaned_data["name"]
                if name == "bad":
                    raise forms.ValidationError("bad name")
                return name


        class QuestionForm(forms.ModelForm):
            class Meta:
                model = Question
                fields = ["question_text"]
    """,
    "polls/views.py": """
        from django.apps import apps
        from django.http import HttpResponse
        from django.shortcuts import render

        from .forms import ContactForm, QuestionForm
        from .models import Question


        def index(request):
            return HttpResponse("index v1")


        def question(request, pk):
            q = Question.objects.get(pk=pk)
            registered = apps.get_model("polls", "Question") is Question
            shown = [str(getattr(q, name, "-")) for name in request.GET.getlist("show")]
            return HttpResponse(" | ".join([str(q), q.shout, f"registered={registered}", *shown]))


        def contact(request):
            form = ContactForm(request.GET or None)
            if request.GET and form.is_valid():
                return HttpResponse("valid " + repr(sorted(form.cleaned_data.items())))
            return HttpResponse(form.as_p() + " errors=" + repr(sorted(form.errors)))


        def question_form(request):
            return HttpResponse(QuestionForm().as_p())


        def page(request):
            return render(request, "polls/page.html", {"n": 1})
    """,
    "polls/templates/polls/page.html": "page v1 {{ n }}\n",
    "polls/urls.py": """
        from django.urls import path

        from . import views

        urlpatterns = [
            path("", views.index),
            path("q/<int:pk>/", views.question),
            path("contact/", views.contact),
            path("qform/", views.question_form),
            path("page/", views.page),
        ]
    """,
    "polls/middleware.py": """
        class StampMiddleware:
            def __init__(self, get_response):
                self.get_response = get_response

            def __call__(self, request):
                response = self.get_response(request)
                response["X-Stamp"] = "stamp v1"
                return response


        def timing(get_response):
            def middleware(request):
                response = get_response(request)
                response["X-Timing"] = "timing v1"
                return response

            return middleware
    """,
}

RUN = [sys.executable, "-m", "mighty_patcher", "run"]

#: Made once per module: the tables, a superuser and one question.
SETUP_DB = """
import os, sys
sys.path.insert(0, os.getcwd())
os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
User.objects.create_superuser("admin", "admin@example.com", "secret")
from polls.models import Question
Question.objects.create(question_text="What's up?")
"""


@pytest.fixture(scope="module")
def made_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import django  # noqa: F401
    except ImportError:
        require(False, "Django is not installed (requirements-dev.txt installs it)")
    root = tmp_path_factory.mktemp("django") / "site"
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    proc = subprocess.run(
        [sys.executable, "-c", SETUP_DB], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture
def site(made_project: Path, tmp_path: Path) -> Path:
    """A copy of the project, for one test to edit."""
    root = tmp_path / "site"
    shutil.copytree(made_project, root)
    return root


@pytest.fixture
def server(site: Path):
    started = Server(site)
    yield started
    started.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m mighty_patcher run manage.py runserver --noreload 127.0.0.1:<port>``."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.proc = subprocess.Popen(
            [*RUN, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.seen = 0  # lines looked at by wait_log
        self._lock = threading.Lock()
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        self.jar = jar
        self.wait_for("/polls/", lambda status, body, headers: status == 200)

    def _read(self, stream) -> None:
        for line in stream:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        """What the server printed, without its one line per request."""
        with self._lock:
            return "\n".join(line for line in self.lines if not REQUEST_LINE.match(line))

    def request(self, path: str, data: dict[str, str] | None = None) -> tuple[int, str, dict]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(self.url + path, body, timeout=TIMEOUT) as response:
                return response.status, response.read().decode(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace"), dict(exc.headers)

    def get(self, path: str) -> str:
        status, body, _ = self.request(path)
        assert status == 200, f"GET {path}: {status}\n{body[:2000]}\n--- server log\n{self.log}"
        return body

    def wait_for(
        self, path: str, done: Callable[[int, str, dict], bool], what: str = ""
    ) -> tuple[int, str, dict]:
        """Requests ``path`` until ``done(status, body, headers)``: a save takes effect at a request
        made after the reloader applied it, which is soon, not at a known time."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode}\n{self.log}")
            try:
                status, body, headers = self.request(path)
            except (urllib.error.URLError, ConnectionError, OSError):
                status, body, headers = 0, "", {}
            if done(status, body, headers):
                return status, body, headers
            if time.monotonic() > deadline:
                pytest.fail(
                    f"GET {path} never became {what or 'what was expected'}; last: {status}\n"
                    f"{body[:300]}\n--- server log\n{self.log}"
                )
            time.sleep(0.05)

    def wait_log(self, pattern: str) -> str:
        """The next reload line matching ``pattern`` printed since the last save (and after
        the lines returned before)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            with self._lock:
                lines = self.lines[self.seen :]
            for i, line in enumerate(lines):
                if line.startswith("[mighty_patcher]") and re.search(pattern, line):
                    time.sleep(0.05)  # its continuation lines ("  note: ...") follow at once
                    with self._lock:
                        rest = self.lines[self.seen + i + 1 :]
                        more = list(itertools.takewhile(lambda x: x.startswith("  "), rest))
                        self.seen += i + 1 + len(more)
                    return "\n".join([line, *more])
            if time.monotonic() > deadline:
                pytest.fail(f"no reload line matching {pattern!r}\n--- server log\n{self.log}")
            time.sleep(0.05)

    def save(
        self, name: str, old: str | dict[str, str], new: str = "", *, rename: bool = False
    ) -> None:
        """Replaces ``old`` by ``new`` (or each key of a dict by its value) in the project's
        file ``name``, in one save: written in place, or written aside and renamed over it
        as many editors do. A ``new`` block starting with a newline is written indented as
        in the test and takes the indentation ``old`` has in the file."""
        with self._lock:
            self.seen = len(self.lines)  # wait_log looks at what follows
        path = self.root / name
        text = path.read_text()
        for before, after in (old if isinstance(old, dict) else {old: new}).items():
            assert before in text, f"{before!r} not in {name}"
            if after.startswith("\n"):
                at = text.index(before)
                indent = text[text.rfind("\n", 0, at) + 1 : at]
                first, *rest = textwrap.dedent(after[1:]).split("\n")
                after = "\n".join([first, *(indent + line if line else line for line in rest)])
            text = text.replace(before, after, 1)
        if rename:
            aside = path.with_name(path.name + ".tmp~")
            aside.write_text(text)
            os.replace(aside, path)
        else:
            with open(path, "w") as f:
                f.write(text)

    def login(self) -> None:
        self.request("/admin/login/")
        token = next(c.value for c in self.jar if c.name == "csrftoken")
        status, body, _ = self.request(
            "/admin/login/?next=/admin/",
            {"username": "admin", "password": "secret", "csrfmiddlewaretoken": token},
        )
        assert status == 200 and "Site administration" in body, body[:2000]

    def close(self) -> None:
        stop(self.proc)

    def assert_no_warning(self, *, failed: int = 0) -> None:
        """No "already registered" warning was printed, and ``failed`` reloads failed."""
        assert "already registered" not in self.log, self.log
        assert self.log.count("failed; it keeps running") == failed, self.log


def test_views_and_urls_at_the_next_request(server: Server):
    assert server.get("/polls/") == "index v1"
    server.save("polls/views.py", '"index v1"', '"index v2"')
    server.wait_for("/polls/", lambda s, b, h: b == "index v2")
    server.wait_log(r"reloaded polls\.views: patched index;")

    # A new view, then its URL in the app's urlconf (included from the root one): it
    # answers, and reverse() finds its name.
    server.save(
        "polls/views.py",
        {
            "from django.http import HttpResponse": (
                "from django.http import HttpResponse\nfrom django.urls import reverse"
            ),
            "def contact(request):": """
            def hello(request):
                return HttpResponse("hello at " + reverse("hello"))


            def contact(request):""",
        },
        rename=True,
    )
    server.wait_log(r"reloaded polls\.views: added hello")
    assert server.request("/polls/hello/")[0] == 404
    server.save(
        "polls/urls.py",
        '    path("", views.index),',
        '    path("", views.index),\n    path("hello/", views.hello, name="hello"),',
    )
    server.wait_for("/polls/hello/", lambda s, b, h: b == "hello at /polls/hello/")

    # A URL removed answers 404, by a save through a rename.
    server.save("polls/urls.py", '    path("", views.index),\n', "", rename=True)
    server.wait_for("/polls/", lambda s, b, h: s == 404, "404")
    assert server.get("/polls/hello/") == "hello at /polls/hello/"

    # The root urlconf: a new include answers.
    server.save(
        "mysite/urls.py",
        '    path("admin/", admin.site.urls),',
        '    path("admin/", admin.site.urls),\n    path("again/", include("polls.urls")),',
    )
    server.wait_for("/again/hello/", lambda s, b, h: s == 200 and b.startswith("hello at "))
    server.assert_no_warning()


def test_model_methods_apply_live_and_field_changes_ask_for_a_migration(server: Server):
    assert server.get("/polls/q/1/") == "What's up? | WHAT'S UP? | registered=True"
    server.save(
        "polls/models.py",
        {
            "return self.question_text.upper()": "return 'shout v2'",
            "return self.question_text\n": "return 'str v2'\n",
        },
    )
    server.wait_for("/polls/q/1/", lambda s, b, h: b == "str v2 | shout v2 | registered=True")
    line = server.wait_log(r"reloaded polls\.models")
    assert "patched Question.__str__, Question.shout;" in line and "restart" not in line

    # A new property and a constant: patched in; ModelBase does not run again.
    server.save(
        "polls/models.py",
        "@property\n    def shout(self):",
        """
            LIMIT = 3

            @property
            def short(self):
                return self.question_text[: self.LIMIT]

            @property
            def shout(self):""",
        rename=True,
    )
    line = server.wait_log(r"reloaded polls\.models")
    assert "added Question.LIMIT, Question.short;" in line and "restart" not in line
    body = server.get("/polls/q/1/?show=short")
    assert body == "str v2 | shout v2 | registered=True | Wha"

    # A field added, with a method edit in the same save: the field is refused, by name,
    # asking for a migration and a restart, and nothing of it is applied; the method edit
    # applies; the model keeps working.
    server.save(
        "polls/models.py",
        {
            "    pub_date = models": '    author = models.CharField(max_length=50, default="")\n'
            "    pub_date = models",
            "return 'shout v2'": "return 'shout v3'",
        },
    )
    line = server.wait_log(r"reloaded polls\.models")
    assert "patched Question.shout;" in line
    assert "needs a restart: polls.Question: field author added;" in line
    assert "makemigrations and migrate, then restart" in line
    body = server.get("/polls/q/1/?show=author")
    assert body == "str v2 | shout v3 | registered=True | -"

    # A field changed, a field removed, Meta: each model says what, together.
    server.save(
        "polls/models.py",
        {
            "models.CharField(max_length=200)\n": "models.CharField(max_length=300)\n",
            "    votes = models.IntegerField(default=0)\n": "",
            "    LIMIT = 3\n": "    LIMIT = 3\n    published = models.Manager()\n\n"
            "    class Meta:\n        ordering = ['id']\n",
        },
        rename=True,
    )
    line = server.wait_log(r"reloaded polls\.models")
    assert (
        "needs a restart: polls.Question: field author added, field question_text changed, "
        "Meta changed, manager published added; Django built the model's fields when it "
        "started: run manage.py makemigrations and migrate, then restart" in line
    )
    assert "; polls.Choice: field votes removed; Django built" in line
    assert server.get("/polls/q/1/") == "str v2 | shout v3 | registered=True"

    # A model removed stays (Django keeps it registered); a new one says it needs a table.
    server.save(
        "polls/models.py",
        "class Choice(models.Model):\n"
        "    question = models.ForeignKey(Question, on_delete=models.CASCADE)\n"
        "    choice_text = models.CharField(max_length=200)\n"
        "\n"
        "    def __str__(self):\n"
        "        return self.choice_text\n",
        "class Tag(models.Model):\n    name = models.CharField(max_length=20)\n",
    )
    line = server.wait_log(r"reloaded polls\.models")
    assert "needs a restart: polls.Choice was removed from its module" in line
    assert "note: polls.Tag is a new model: run manage.py makemigrations and migrate" in line
    assert server.get("/polls/q/1/?show=choice_set") == (
        "str v2 | shout v3 | registered=True | polls.Choice.None"
    )

    # A signal receiver connected by its decorator: new decorator arguments need a restart.
    server.save("polls/models.py", "@receiver(post_save, sender=Question)", "@receiver(post_save)")
    line = server.wait_log(r"reloaded polls\.models")
    assert (
        "patched question_saved; needs a restart: signal receiver question_saved had its "
        "decorators changed: it stays connected as it was" in line
    )
    server.assert_no_warning()


def test_admin_options_and_methods_apply_to_the_changelist(server: Server):
    server.login()
    page = server.get("/admin/polls/question/")
    assert "Length" in page and '<td class="field-text_length">10</td>' in page

    server.save(
        "polls/admin.py", "return len(obj.question_text)", "return len(obj.question_text) * 7"
    )
    server.wait_for("/admin/polls/question/", lambda s, b, h: 'field-text_length">70<' in b)

    # Options: @admin.register runs again, and the site keeps its registration.
    server.save(
        "polls/admin.py",
        '    list_display = ["question_text", "text_length"]',
        '    list_display = ["question_text", "text_length", "was_published_recently"]',
        rename=True,
    )
    line = server.wait_log(r"reloaded polls\.admin")
    assert "patched QuestionAdmin" in line and "restart" not in line
    page = server.get("/admin/polls/question/")
    assert "Published recently?" in page and 'field-text_length">70<' in page

    # A save that fails after the class was rebuilt changes nothing, its registration
    # included; the next save applies.
    server.save(
        "polls/admin.py",
        {
            '"was_published_recently"]': '"was_published_recently", "pub_date"]',
            "@admin.display(description=": "BROKEN = 1 / 0\n\n    @admin.display(description=",
        },
    )
    server.wait_log(r"reload of polls\.admin failed")
    assert "ZeroDivisionError: division by zero\n  at polls/admin.py" in server.log
    page = server.get("/admin/polls/question/")
    assert "Published recently?" in page and "Date published" not in page
    server.save("polls/admin.py", "BROKEN = 1 / 0\n", "", rename=True)
    server.wait_log(r"reloaded polls\.admin: patched QuestionAdmin")
    assert "Date published" in server.get("/admin/polls/question/")

    # The model's @admin.display arguments: patched into the model, ModelBase not run.
    server.save("polls/models.py", 'description="Published recently?"', 'description="Fresh?"')
    line = server.wait_log(r"reloaded polls\.models")
    assert "patched Question.was_published_recently;" in line and "restart" not in line
    assert "Fresh?" in server.get("/admin/polls/question/")

    # A model newly registered gets its admin pages.
    assert server.request("/admin/polls/choice/")[0] == 404
    server.save(
        "polls/admin.py",
        "class ChoiceInline(admin.TabularInline):",
        """
        @admin.register(Choice)
        class ChoiceAdmin(admin.ModelAdmin):
            list_display = ["choice_text", "votes"]


        class ChoiceInline(admin.TabularInline):""",
    )
    server.wait_log(r"reloaded polls\.admin: added ChoiceAdmin")
    assert "Select choice to change" in server.get("/admin/polls/choice/")
    assert "Fresh?" in server.get("/admin/polls/question/")

    # And a ModelAdmin deleted unregisters its model.
    server.save(
        "polls/admin.py",
        "@admin.register(Choice)\n"
        "class ChoiceAdmin(admin.ModelAdmin):\n"
        '    list_display = ["choice_text", "votes"]\n',
        "",
        rename=True,
    )
    server.wait_log(r"reloaded polls\.admin: deleted ChoiceAdmin")
    assert server.request("/admin/polls/choice/")[0] == 404
    assert "Fresh?" in server.get("/admin/polls/question/")

    # A registration statement added, given a ModelAdmin (found by trying the product as a
    # user: AlreadyRegistered, and the whole file failed), and removed.
    server.save(
        "polls/admin.py",
        "class ChoiceInline(admin.TabularInline):",
        "admin.site.register(Choice)\n\n\nclass ChoiceInline(admin.TabularInline):",
    )
    server.wait_for("/admin/polls/choice/", lambda s, b, h: "Select choice to change" in b)
    server.save(
        "polls/admin.py",
        "admin.site.register(Choice)\n",
        'class VotesAdmin(admin.ModelAdmin):\n    search_fields = ["choice_text"]\n\n\n'
        "admin.site.register(Choice, VotesAdmin)\n",
    )
    server.wait_for("/admin/polls/choice/", lambda s, b, h: 'id="searchbar"' in b)
    line = server.wait_log(r"reloaded polls\.admin: .*re-ran admin\.site\.register")
    assert "restart" not in line
    server.save("polls/admin.py", "admin.site.register(Choice, VotesAdmin)\n", "")
    server.wait_for("/admin/polls/choice/", lambda s, b, h: s == 404)
    line = server.wait_log(r"reloaded polls\.admin: .*deleted admin\.site\.register")
    assert "restart" not in line
    server.assert_no_warning(failed=1)


def test_form_fields_and_clean_methods(server: Server):
    assert server.get("/polls/contact/?name=bad").endswith("errors=['name']")
    server.save("polls/forms.py", 'if name == "bad":', 'if name == "worse":')
    server.wait_for("/polls/contact/?name=bad", lambda s, b, h: b.startswith("valid"))

    server.save(
        "polls/forms.py",
        "    name = forms.CharField(max_length=20)",
        "    name = forms.CharField(max_length=20)\n    email = forms.EmailField()",
        rename=True,
    )
    server.wait_log(r"reloaded polls\.forms: added ContactForm\.email")
    body = server.get("/polls/contact/")
    assert 'name="name"' in body and 'name="email"' in body
    assert server.get("/polls/contact/?name=ok").endswith("errors=['email']")
    assert server.get("/polls/contact/?name=ok&email=a@b.org").startswith("valid")

    assert 'name="pub_date"' not in server.get("/polls/qform/")
    server.save(
        "polls/forms.py", 'fields = ["question_text"]', 'fields = ["question_text", "pub_date"]'
    )
    server.wait_log(r"reloaded polls\.forms: patched QuestionForm\.Meta")
    assert 'name="pub_date"' in server.get("/polls/qform/")

    # A form derived from an edited one keeps its fields, and the report says so.
    server.save(
        "polls/forms.py",
        "class QuestionForm(",
        "class SignupForm(ContactForm):\n    pass\n\n\nclass QuestionForm(",
    )
    server.wait_log(r"reloaded polls\.forms: added SignupForm")
    server.save(
        "polls/forms.py",
        "    email = forms.EmailField()",
        "    email = forms.EmailField(required=False)",
    )
    line = server.wait_log(r"reloaded polls\.forms")
    assert "patched ContactForm.email" in line
    assert (
        "needs a restart: the forms derived from ContactForm (SignupForm) keep the fields they "
        "were made with" in line
    )
    assert server.get("/polls/contact/?name=ok").startswith("valid")
    server.assert_no_warning()


def test_middleware_edits_and_what_needs_a_restart(server: Server):
    headers = server.request("/polls/")[2]
    assert (headers["X-Stamp"], headers["X-Timing"]) == ("stamp v1", "timing v1")
    server.save("polls/middleware.py", {'"stamp v1"': '"stamp v2"', '"timing v1"': '"timing v2"'})
    line = server.wait_log(r"reloaded polls\.middleware")
    assert "patched StampMiddleware.__call__, timing;" in line and "restart" not in line
    headers = server.request("/polls/")[2]
    assert (headers["X-Stamp"], headers["X-Timing"]) == ("stamp v2", "timing v2")

    # What Django did once, at startup: make the instance, call the factory, read settings.
    server.save(
        "polls/middleware.py",
        {
            "self.get_response = get_response": (
                "self.get_response = get_response\n        self.made = 2"
            ),
            "def timing(get_response):": "def timing(get_response):\n    label = 't'",
            "def __call__(self, request):": """
            def process_view(self, request, view, args, kwargs):
                return None

            def __call__(self, request):""",
        },
        rename=True,
    )
    line = server.wait_log(r"reloaded polls\.middleware")
    assert (
        "needs a restart: middleware polls.middleware.StampMiddleware: process_view added or "
        "removed; Django looks for these methods once, when it loads its middleware: restart "
        "to apply; middleware polls.middleware.StampMiddleware: __init__ changed; Django made "
        "the middleware instance when it started, so the new __init__ runs at a restart (the "
        "live instance gets only the attributes it sets from constants, filled as for any live "
        "object); "
        "middleware polls.middleware.timing: the factory's own code changed" in line
    )
    server.save("mysite/settings.py", '    "polls.middleware.timing",\n', "")
    line = server.wait_log(r"reloaded mysite\.settings")
    assert (
        "needs a restart: settings MIDDLEWARE changed: Django read its settings when it "
        "started; restart to apply" in line
    )
    headers = server.request("/polls/")[2]
    assert (headers["X-Stamp"], headers["X-Timing"]) == ("stamp v2", "timing v2")
    server.assert_no_warning()


def test_templates_are_djangos_own_business(site: Path):
    # With DEBUG and the default loaders, Django caches templates (since 4.1) and only its
    # own autoreloader, off under --noreload, clears that cache: an edited template is not
    # seen, even after a reload of Python code.
    server = Server(site)
    try:
        assert server.get("/polls/page/") == "page v1 1\n"
        server.save("polls/templates/polls/page.html", "page v1", "page v2")
        server.save("polls/views.py", '{"n": 1}', '{"n": 2}')
        server.wait_log(r"reloaded polls\.views: patched page")
        assert server.get("/polls/page/") == "page v1 2\n"
    finally:
        server.close()

    # The loaders docs/frameworks/django.md gives for development, not cached: it is seen.
    settings = site / "mysite/settings.py"
    text = settings.read_text()
    settings.write_text(
        text.replace(
            '"APP_DIRS": True,\n        "OPTIONS": {',
            '"OPTIONS": {\n            "loaders": ['
            '"django.template.loaders.filesystem.Loader", '
            '"django.template.loaders.app_directories.Loader"],',
        )
    )
    server = Server(site)
    try:
        assert server.get("/polls/page/") == "page v2 2\n"
        server.save("polls/templates/polls/page.html", "page v2", "page v3", rename=True)
        server.wait_for("/polls/page/", lambda s, b, h: b == "page v3 2\n")
        server.assert_no_warning()
    finally:
        server.close()


def test_model_changes_are_compared_with_the_fields_the_model_runs_with(server: Server):
    # (found by trying the product as a user: a refused field change undone in the file was
    # refused again; a refused field removed again was reported as "deleted")
    models = server.root / "polls" / "models.py"
    running = models.read_text()
    server.save("polls/models.py", "CharField(max_length=200)\n", "CharField(max_length=300)\n")
    line = server.wait_log(r"reloaded polls\.models")
    assert "needs a restart: polls.Question: field question_text changed;" in line

    # Back as the model runs, with a method edit: the edit applies, nothing needs a restart.
    server.save(
        "polls/models.py",
        {
            "CharField(max_length=300)\n": "CharField(max_length=200)\n",
            "return self.question_text\n": "return 'str v2'\n",
        },
    )
    line = server.wait_log(r"reloaded polls\.models")
    assert "patched Question.__str__;" in line and "restart" not in line
    assert "note: polls.Question is back to the fields it runs with" in line
    assert server.get("/polls/q/1/").startswith("str v2 | WHAT'S UP?")

    # A field added is refused; removed again, it was never there: nothing is "deleted".
    server.save(
        "polls/models.py",
        "    pub_date = models",
        "    stock = models.IntegerField(default=5)\n    pub_date = models",
    )
    line = server.wait_log(r"reloaded polls\.models")
    assert "needs a restart: polls.Question: field stock added;" in line
    server.save("polls/models.py", "    stock = models.IntegerField(default=5)\n", "")
    line = server.wait_log(r"reloaded polls\.models")
    assert "deleted" not in line and "restart" not in line, line

    # A backup restored over refused edits: only what differs from the running model is said.
    server.save(
        "polls/models.py",
        {
            "CharField(max_length=200)\n": "CharField(max_length=250)\n",
            "    pub_date = models": '    author = models.CharField(max_length=5, default="")\n'
            "    pub_date = models",
        },
    )
    server.wait_log(r"reloaded polls\.models: .*field author added")
    with server._lock:
        server.seen = len(server.lines)
    models.write_text(
        running.replace(
            "    pub_date = models",
            '    color = models.CharField(max_length=9, default="")\n    pub_date = models',
        )
    )
    line = server.wait_log(r"reloaded polls\.models")
    assert "needs a restart: polls.Question: field color added; Django built" in line, line
    assert server.get("/polls/q/1/") == "What's up? | WHAT'S UP? | registered=True"
    server.assert_no_warning()
