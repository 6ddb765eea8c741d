/*
 * Job files: a valid file with every key, image paths taken relative to
 * the job file's directory, and the refusals: a changed image (naming the
 * file and both digests), an unknown key, missing or empty images, a bad
 * offset, a bad "after", wrong types, an unknown chip, bad JSON.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "digest.h"
#include "jobfile.h"
#include "util.h"
#include "tap.h"

static char	test_dir[] = "/tmp/test-jobfile.XXXXXX";
static char	test_sha[65];	/* of sub/a.bin */
static char	test_sha2[65];	/* of sub/b.bin */

/* Write text to dir/name. */
static void
test_write(const char *name, const void *data, size_t len)
{
	char	*p = xasprintf("%s/%s", test_dir, name);
	FILE	*f;

	if ((f = fopen(p, "wb")) == NULL || fwrite(data, 1, len, f) != len)
		fatalx("cannot write %s", p);
	fclose(f);
	free(p);
}

/* Write a job file and load it; returns jobfile_load's result. */
static int
test_load(const char *name, const char *json, struct jobfile *jf,
    char **cause)
{
	char	*p;
	int	 rc;

	test_write(name, json, strlen(json));
	p = xasprintf("%s/%s", test_dir, name);
	*cause = NULL;
	rc = jobfile_load(p, jf, cause);
	free(p);
	return (rc);
}

/* A load that must fail with -EINVAL and a cause containing want. */
static void
test_refused(const char *json, const char *want, const char *what)
{
	struct jobfile	 jf;
	char		*cause;
	int		 rc;

	rc = test_load("sub/bad.json", json, &jf, &cause);
	tap_ok(rc == -EINVAL && cause != NULL && strstr(cause, want) != NULL,
	    "%s is refused naming it (%d: %s)", what, rc,
	    cause != NULL ? cause : "no cause");
	tap_ok(jf.images == NULL && jf.path == NULL,
	    "%s: nothing is left to free", what);
	free(cause);
}

/* The valid file: every key, two images, a relative and a ../ path. */
static void
test_valid(void)
{
	struct jobfile	 jf;
	char		*cause, *json, **argv, *want;
	int		 rc, n;

	json = xasprintf("{\n \"name\": \"Screek 1U\", \"chip\": \"esp32s2\","
	    "\n \"images\": [ {\"offset\": \"0x0\", \"path\": \"a.bin\", "
	    "\"sha256\": \"%s\"},\n  {\"offset\": 65536, \"path\": "
	    "\"../b.bin\", \"sha256\": \"%s\"} ],\n \"after\": \"stay\", "
	    "\"boot_check\": \"ESPHome 2023.6.3\", \"retries\": 2, "
	    "\"auto\": false }\n", test_sha, test_sha2);
	rc = test_load("sub/job.json", json, &jf, &cause);
	free(json);
	is_int(rc, 0, "a valid job file loads (%s)", cause != NULL ? cause :
	    "no cause");
	free(cause);
	if (rc != 0)
		return;
	is_str(jf.name, "Screek 1U", "name");
	is_str(jf.chip, "esp32s2", "chip");
	is_int((int)jf.nimages, 2, "two images");
	is_int((int)jf.images[0].offset, 0, "offset \"0x0\"");
	is_int((int)jf.images[1].offset, 0x10000, "offset 65536 (a number)");
	want = xasprintf("%s/sub/a.bin", test_dir);
	is_str(jf.images[0].path, want, "a relative path is taken from the "
	    "job file's directory");
	free(want);
	want = xasprintf("%s/sub/../b.bin", test_dir);
	is_str(jf.images[1].path, want, "so is one with ../");
	free(want);
	tap_ok(jf.has_after && jf.after == LOADER_AFTER_STAY, "after stay");
	is_str(jf.boot_check, "ESPHome 2023.6.3", "boot_check");
	tap_ok(jf.has_retries && jf.retries == 2, "retries 2");
	tap_ok(jf.has_auto && !jf.auto_on, "auto false");
	n = jobfile_argv(&jf, &argv);
	is_int(n, 4, "argv: two OFFSET FILE pairs");
	is_str(argv[0], "0x0", "argv[0]");
	is_str(argv[1], jf.images[0].path, "argv[1]");
	is_str(argv[2], "0x10000", "argv[2]");
	tap_ok(argv[4] == NULL, "argv ends with NULL");
	jobfile_argv_free(argv);
	jobfile_free(&jf);
	tap_ok(jf.images == NULL && jf.name == NULL, "jobfile_free zeroes");
}

/* Only "images" is required; the rest keeps its "unset" marks. */
static void
test_minimal(void)
{
	struct jobfile	 jf;
	char		*cause, *json;
	int		 rc;

	json = xasprintf("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}]}", test_sha);
	rc = test_load("sub/min.json", json, &jf, &cause);
	free(json);
	is_int(rc, 0, "a job file with only images loads");
	tap_ok(rc == 0 && !jf.has_after && !jf.has_retries && !jf.has_auto &&
	    jf.chip == NULL && jf.boot_check == NULL && jf.name != NULL &&
	    jf.name[0] == '\0', "the optional settings stay unset");
	free(cause);
	jobfile_free(&jf);
}

/* A changed image: refused, naming the file and both digests. */
static void
test_changed(void)
{
	struct jobfile	 jf;
	char		*cause, *json, wrong[65];
	int		 rc;

	memcpy(wrong, test_sha, sizeof(wrong));
	wrong[0] = wrong[0] == '0' ? '1' : '0';
	json = xasprintf("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}]}", wrong);
	rc = test_load("sub/changed.json", json, &jf, &cause);
	free(json);
	is_int(rc, -EBADMSG, "a changed image is refused");
	tap_ok(cause != NULL && strstr(cause, "a.bin changed since the job "
	    "was written") != NULL, "the cause names the file: %s",
	    cause != NULL ? cause : "none");
	tap_ok(cause != NULL && strstr(cause, test_sha) != NULL &&
	    strstr(cause, wrong) != NULL, "the cause gives both digests");
	tap_ok(cause != NULL && strstr(cause, test_sha) < strstr(cause, wrong),
	    "the file's digest first, then the job's");
	free(cause);

	/* The same digest in capitals is the same digest. */
	for (rc = 0; rc < 64; rc++)
		wrong[rc] = (char)(test_sha[rc] >= 'a' ? test_sha[rc] - 32 :
		    test_sha[rc]);
	json = xasprintf("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}]}", wrong);
	rc = test_load("sub/upper.json", json, &jf, &cause);
	free(json);
	is_int(rc, 0, "a digest in capitals matches");
	free(cause);
	jobfile_free(&jf);
}

/* Everything else that is refused. */
static void
test_bad(void)
{
	struct jobfile	 jf;
	char		*cause, *json, *p;
	int		 rc;

	json = xasprintf("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}], \"colour\": \"red\"}", test_sha);
	test_refused(json, "unknown key \"colour\"", "an unknown key");
	free(json);
	json = xasprintf("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\", \"size\": 1}]}", test_sha);
	test_refused(json, "unknown key \"size\" in images[0]",
	    "an unknown key in an image");
	free(json);
	test_refused("{\"name\": \"x\"}", "\"images\" is missing",
	    "a job without images");
	test_refused("{\"images\": []}", "\"images\" must list 1 to",
	    "an empty images list");
	test_refused("{\"images\": \"a.bin\"}", "\"images\" must be an array",
	    "images of the wrong type");
	json = xasprintf("{\"images\": [{\"offset\": \"0xzz\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}]}", test_sha);
	test_refused(json, "\"offset\" \"0xzz\" is not a flash offset",
	    "a bad offset");
	free(json);
	json = xasprintf("{\"images\": [{\"offset\": \"-1\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}]}", test_sha);
	test_refused(json, "is not a flash offset", "a negative offset");
	free(json);
	json = xasprintf("{\"images\": [{\"offset\": \"0x100000000\", "
	    "\"path\": \"a.bin\", \"sha256\": \"%s\"}]}", test_sha);
	test_refused(json, "is not a flash offset", "an offset past 4 GiB");
	free(json);
	json = xasprintf("{\"images\": [{\"offset\": true, \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}]}", test_sha);
	test_refused(json, "\"offset\" must be a string", "a boolean offset");
	free(json);
	json = xasprintf("{\"images\": [{\"path\": \"a.bin\", \"sha256\": "
	    "\"%s\"}]}", test_sha);
	test_refused(json, "images[0] has no \"offset\"", "a missing offset");
	free(json);
	json = xasprintf("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}], \"after\": \"hard-reset\"}",
	    test_sha);
	test_refused(json, "\"after\" is \"reboot\" or \"stay\", not "
	    "\"hard-reset\"", "a bad after value");
	free(json);
	json = xasprintf("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}], \"retries\": \"2\"}", test_sha);
	test_refused(json, "\"retries\" must be a whole number",
	    "retries as a string");
	free(json);
	json = xasprintf("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}], \"auto\": 1}", test_sha);
	test_refused(json, "\"auto\" must be true or false", "auto as 1");
	free(json);
	json = xasprintf("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}], \"name\": 7}", test_sha);
	test_refused(json, "\"name\" must be a string, not int",
	    "a name of the wrong type");
	free(json);
	json = xasprintf("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}], \"chip\": \"esp8266x\"}",
	    test_sha);
	test_refused(json, "\"chip\" \"esp8266x\" is not a chip",
	    "an unknown chip");
	free(json);
	test_refused("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"a.bin\", \"sha256\": \"abc\"}]}", "needs \"sha256\"",
	    "a short sha256");
	json = xasprintf("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"a.bin\", \"sha256\": \"%s\"}, {\"offset\": 0, \"path\": "
	    "\"../b.bin\", \"sha256\": \"%s\"}]}", test_sha, test_sha2);
	test_refused(json, "both go to offset 0x0", "two images at one offset");
	free(json);
	test_refused("{\"images\": [", "is not valid JSON", "cut JSON");
	test_refused("{\"images\": []} {}", "text after the object",
	    "two objects");
	test_refused("[1, 2]", "one JSON object", "an array at the top");

	/* A missing image file and a missing job file: -ENOENT. */
	json = xasprintf("{\"images\": [{\"offset\": \"0x0\", \"path\": "
	    "\"nothere.bin\", \"sha256\": \"%s\"}]}", test_sha);
	rc = test_load("sub/missing.json", json, &jf, &cause);
	free(json);
	tap_ok(rc == -ENOENT && cause != NULL && strstr(cause, "nothere.bin") !=
	    NULL, "a missing image is named (%s)", cause != NULL ? cause : "");
	free(cause);
	p = xasprintf("%s/sub/none.json", test_dir);
	cause = NULL;
	rc = jobfile_load(p, &jf, &cause);
	tap_ok(rc == -ENOENT && cause != NULL && strstr(cause, p) != NULL,
	    "a missing job file is named");
	free(cause);
	free(p);
}

/* Make the images, run the cases, clean up. */
int
main(void)
{
	static const char	a[] = "factory image bytes\n";
	static const char	b2[] = "the OTA app\n";
	char			*p;

	if (mkdtemp(test_dir) == NULL)
		fatalx("mkdtemp failed");
	p = xasprintf("%s/sub", test_dir);
	if (mkdir(p, 0700) != 0)
		fatalx("mkdir %s failed", p);
	free(p);
	test_write("sub/a.bin", a, sizeof(a) - 1);
	test_write("b.bin", b2, sizeof(b2) - 1);
	digest_sha256_hex(a, sizeof(a) - 1, test_sha);
	digest_sha256_hex(b2, sizeof(b2) - 1, test_sha2);

	test_valid();
	test_minimal();
	test_changed();
	test_bad();

	p = xasprintf("rm -rf '%s'", test_dir);
	if (system(p) != 0)
		tap_diag("could not remove %s", test_dir);
	free(p);
	tap_done();
	return (0);
}
