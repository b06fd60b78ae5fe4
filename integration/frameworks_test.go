package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// R5: real frameworks, from Debian's packages, run unchanged. Each app is
// wrapped in wsgiref.validate so the framework and pyhost are both held to
// PEP 3333 on every request.

// requireModule skips when python lacks a framework; `make test` installs
// them all, so a skip there means the install step is broken.
func requireModule(t *testing.T, module string) {
	t.Helper()
	if err := exec.Command(python, "-c", "import "+module).Run(); err != nil {
		t.Skipf("python module %s is not installed (make test installs it with apt-get)", module)
	}
}

func newJarClient(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: read: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

func mustReq(method, u, body string) *http.Request {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, u, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return req
}

const flaskApp = `
from flask import Flask, jsonify, redirect, request, session, url_for

app = Flask(__name__)
app.secret_key = "test-only-secret"

@app.route("/")
def index():
    return "flask index"

@app.route("/json")
def data():
    return jsonify(items=[1, 2, 3], path=request.path)

@app.route("/form", methods=["POST"])
def form():
    return "hello " + request.form["name"]

@app.route("/go")
def go():
    return redirect(url_for("index"))

@app.route("/count")
def count():
    session["n"] = session.get("n", 0) + 1
    return str(session["n"])

application = app
`

func TestFlask(t *testing.T) {
	t.Parallel()
	requireModule(t, "flask")
	dir := writeApp(t, map[string]string{"wsgi.py": validated(flaskApp)})
	s := startServe(t, dir, "wsgi.py")
	c := newJarClient(t)

	if resp, body := do(t, c, mustReq("GET", s.URL+"/", "")); resp.StatusCode != 200 || body != "flask index" {
		t.Errorf("index: %d %q", resp.StatusCode, body)
	}
	resp, body := do(t, c, mustReq("GET", s.URL+"/json", ""))
	var j struct {
		Items []int
		Path  string
	}
	if err := json.Unmarshal([]byte(body), &j); err != nil || resp.Header.Get("Content-Type") != "application/json" || len(j.Items) != 3 || j.Path != "/json" {
		t.Errorf("json: %d %q %q %v", resp.StatusCode, resp.Header.Get("Content-Type"), body, err)
	}
	if resp, body := do(t, c, mustReq("POST", s.URL+"/form", "name=ada")); resp.StatusCode != 200 || body != "hello ada" {
		t.Errorf("form: %d %q", resp.StatusCode, body)
	}
	resp, _ = do(t, c, mustReq("GET", s.URL+"/go", ""))
	if resp.StatusCode != 302 || !strings.HasSuffix(resp.Header.Get("Location"), "/") {
		t.Errorf("redirect: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for want := 1; want <= 3; want++ {
		if _, body := do(t, c, mustReq("GET", s.URL+"/count", "")); body != string(rune('0'+want)) {
			t.Errorf("session counter %q, want %d (session cookie not kept)", body, want)
		}
	}
}

// A minimal Django project in one settings module: a view, the admin's
// login page, and a CSRF-protected form.
var djangoFiles = map[string]string{
	"site_conf/__init__.py": "",
	"site_conf/settings.py": `
SECRET_KEY = "test-only-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "site_conf.urls"
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
STATIC_URL = "/static/"
USE_TZ = True
`,
	"site_conf/urls.py": `
from django.contrib import admin
from django.http import HttpResponse
from django.middleware.csrf import get_token
from django.urls import path

def hello(request):
    return HttpResponse("django says hi to %s" % request.GET.get("name", "nobody"))

def form(request):
    if request.method == "POST":
        return HttpResponse("accepted " + request.POST.get("text", ""))
    return HttpResponse('<form method="post"><input name="csrfmiddlewaretoken" value="%s"></form>' % get_token(request))

urlpatterns = [
    path("hello/", hello),
    path("form/", form),
    path("admin/", admin.site.urls),
]
`,
	"site_conf/wsgi.py": `
import os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_conf.settings")
from django.core.wsgi import get_wsgi_application
application = get_wsgi_application()
`,
}

func TestDjango(t *testing.T) {
	t.Parallel()
	requireModule(t, "django")
	files := map[string]string{}
	for k, v := range djangoFiles {
		files[k] = v
	}
	files["site_conf/wsgi.py"] = validated(djangoFiles["site_conf/wsgi.py"])
	dir := writeApp(t, files)
	s := startServe(t, dir, "--processes", "2", "site_conf.wsgi:application")
	c := newJarClient(t)

	if resp, body := do(t, c, mustReq("GET", s.URL+"/hello/?name=ada", "")); resp.StatusCode != 200 || body != "django says hi to ada" {
		t.Errorf("view: %d %q", resp.StatusCode, body)
	}
	resp, body := do(t, c, mustReq("GET", s.URL+"/admin/login/", ""))
	if resp.StatusCode != 200 || !strings.Contains(body, "csrfmiddlewaretoken") || !strings.Contains(body, "Django") {
		t.Errorf("admin login page: %d\n%.400s", resp.StatusCode, body)
	}
	resp, _ = do(t, c, mustReq("GET", s.URL+"/admin/", ""))
	if resp.StatusCode != 302 || !strings.Contains(resp.Header.Get("Location"), "/admin/login/") {
		t.Errorf("admin index for anonymous: %d %q, want a redirect to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}

	_, page := do(t, c, mustReq("GET", s.URL+"/form/", ""))
	m := regexp.MustCompile(`value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in %q", page)
	}
	withToken := mustReq("POST", s.URL+"/form/", url.Values{"csrfmiddlewaretoken": {m[1]}, "text": {"ok"}}.Encode())
	withToken.Header.Set("Referer", s.URL+"/form/")
	if resp, body := do(t, c, withToken); resp.StatusCode != 200 || body != "accepted ok" {
		t.Errorf("POST with the CSRF token: %d %q", resp.StatusCode, body)
	}
	noToken := mustReq("POST", s.URL+"/form/", "text=forged")
	if resp, _ := do(t, newJarClient(t), noToken); resp.StatusCode != 403 {
		t.Errorf("POST without a CSRF token: %d, want 403", resp.StatusCode)
	}
}

const pyramidApp = `
from pyramid.config import Configurator
from pyramid.response import Response

def hello(request):
    return Response("pyramid hello " + request.matchdict["name"])

def data(request):
    return {"method": request.method, "script_name": request.script_name}

with Configurator() as config:
    config.add_route("hello", "/hello/{name}")
    config.add_view(hello, route_name="hello")
    config.add_route("data", "/data")
    config.add_view(data, route_name="data", renderer="json")
    application = config.make_wsgi_app()
`

func TestPyramid(t *testing.T) {
	t.Parallel()
	requireModule(t, "pyramid")
	dir := writeApp(t, map[string]string{"wsgi.py": validated(pyramidApp)})
	s := startServe(t, dir, "wsgi.py")
	if code, body := get(t, s.URL+"/hello/world"); code != 200 || body != "pyramid hello world" {
		t.Errorf("hello: %d %q", code, body)
	}
	if code, body := get(t, s.URL+"/data"); code != 200 || body != `{"method": "GET", "script_name": ""}` {
		t.Errorf("json: %d %q", code, body)
	}
	if code, _ := get(t, s.URL+"/nowhere"); code != 404 {
		t.Errorf("unknown route: %d", code)
	}
}

const falconApp = `
import falcon

class Items:
    def on_get(self, req, resp):
        resp.media = {"items": ["a", "b"], "q": req.get_param("q")}

    def on_post(self, req, resp):
        body = req.bounded_stream.read()
        resp.status = falcon.HTTP_201
        resp.text = "got %d bytes" % len(body)

app = falcon.App()
app.add_route("/items", Items())
`

func TestFalcon(t *testing.T) {
	t.Parallel()
	requireModule(t, "falcon")
	// The file defines only "app": the fallback name for a script target.
	dir := writeApp(t, map[string]string{"wsgi.py": strings.Replace(validated(falconApp), "application = _validator(application)", "app = _validator(app)", 1)})
	s := startServe(t, dir, "wsgi.py")
	if code, body := get(t, s.URL+"/items?q=x"); code != 200 || body != `{"items": ["a", "b"], "q": "x"}` {
		t.Errorf("get: %d %q", code, body)
	}
	resp, err := http.Post(s.URL+"/items", "application/octet-stream", strings.NewReader(strings.Repeat("z", 100000)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || string(b) != "got 100000 bytes" {
		t.Errorf("post: %d %q", resp.StatusCode, b)
	}
}

const bottleApp = `
import bottle

app = bottle.Bottle()

@app.route("/hello/<name>")
def hello(name):
    return "bottle hello " + name

@app.post("/echo")
def echo():
    return bottle.request.body.read()

application = app
`

func TestBottle(t *testing.T) {
	t.Parallel()
	requireModule(t, "bottle")
	dir := writeApp(t, map[string]string{"wsgi.py": validated(bottleApp)})
	s := startServe(t, dir, "wsgi.py")
	if code, body := get(t, s.URL+"/hello/you"); code != 200 || body != "bottle hello you" {
		t.Errorf("hello: %d %q", code, body)
	}
	resp, err := http.Post(s.URL+"/echo", "text/plain", strings.NewReader("round trip"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "round trip" {
		t.Errorf("echo %q", b)
	}
}
