/*
 * Job files (jobfile.h): parse one JSON object with json-c, check every
 * key and type, resolve image paths against the file's directory and
 * compare each image's sha256 with the one the job names.
 */
#include "config.h"

#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "chip.h"
#include "digest.h"
#include "jobfile.h"
#include "util.h"

#define JOBFILE_MAX_IMAGE	(64 * 1024 * 1024)	/* one image file */

/* The keys of the top object and of an image, in the order documented. */
static const char *const jobfile_keys[] = {
	"name", "chip", "images", "after", "boot_check", "retries", "auto"
};
static const char *const jobfile_image_keys[] = {
	"offset", "path", "sha256"
};

/* Read a whole file of at most max bytes; 0 or -errno with *cause. */
static int
jobfile_read(const char *path, size_t max, uint8_t **out, size_t *outlen,
    const char *what, char **cause)
{
	struct stat	 st;
	uint8_t		*buf = NULL;
	size_t		 len = 0;
	ssize_t		 n;
	int		 fd, error;

	*out = NULL;
	*outlen = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1) {
		error = -errno;
		*cause = xasprintf("cannot read %s %s: %s", what, path,
		    strerror(errno));
		return (error);
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		*cause = xasprintf("%s %s is not a regular file", what, path);
		return (-EINVAL);
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		*cause = xasprintf("%s %s is too large (%lld bytes; at most "
		    "%zu)", what, path, (long long)st.st_size, max);
		return (-EFBIG);
	}
	buf = xmalloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size) {
		n = read(fd, buf + len, (size_t)st.st_size - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			error = n == 0 ? -EIO : -errno;
			*cause = xasprintf("cannot read %s %s: %s", what, path,
			    n == 0 ? "it shrank while being read" :
			    strerror(errno));
			close(fd);
			free(buf);
			return (error);
		}
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return (0);
}

/* Whether key is one of the n names in keys. */
static int
jobfile_known(const char *key, const char *const *keys, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (strcmp(key, keys[i]) == 0)
			return (1);
	}
	return (0);
}

/* Refuse keys of o that are not in keys, naming the first one. */
static int
jobfile_check_keys(const char *path, const char *where,
    struct json_object *o, const char *const *keys, size_t n, char **cause)
{
	struct json_object_iter	it;

	json_object_object_foreachC(o, it) {
		if (!jobfile_known(it.key, keys, n)) {
			*cause = xasprintf("%s: unknown key \"%s\"%s%s; the "
			    "keys are described in espfleet(1), \"Job files\"",
			    path, it.key, where != NULL ? " in " : "",
			    where != NULL ? where : "");
			return (-EINVAL);
		}
	}
	return (0);
}

/* A string member, or NULL (*cause set) when it is not a string. */
static int
jobfile_string(const char *path, struct json_object *o, const char *key,
    const char **out, char **cause)
{
	struct json_object	*v;

	*out = NULL;
	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return (0);
	if (!json_object_is_type(v, json_type_string)) {
		*cause = xasprintf("%s: \"%s\" must be a string, not %s", path,
		    key, json_type_to_name(json_object_get_type(v)));
		return (-EINVAL);
	}
	*out = json_object_get_string(v);
	return (0);
}

/* The image path resolved against the directory of the job file. */
static char *
jobfile_resolve(const char *jobpath, const char *path)
{
	const char	*slash;

	if (path[0] == '/' || (slash = strrchr(jobpath, '/')) == NULL)
		return (xstrdup(path));
	return (xasprintf("%.*s/%s", (int)(slash - jobpath), jobpath, path));
}

/* An offset: a string ("0x10000", "65536") or an integer, 32 bits. */
static int
jobfile_offset(const char *path, size_t i, struct json_object *v,
    uint32_t *out, char **cause)
{
	const char	*s;
	char		*end;
	unsigned long long n;
	int64_t		 iv;

	if (v == NULL) {
		*cause = xasprintf("%s: images[%zu] has no \"offset\"", path,
		    i);
		return (-EINVAL);
	}
	if (json_object_is_type(v, json_type_int)) {
		iv = json_object_get_int64(v);
		if (iv < 0 || iv > (int64_t)UINT32_MAX)
			goto bad;
		*out = (uint32_t)iv;
		return (0);
	}
	if (!json_object_is_type(v, json_type_string)) {
		*cause = xasprintf("%s: images[%zu] \"offset\" must be a "
		    "string such as \"0x10000\" or a number, not %s", path, i,
		    json_type_to_name(json_object_get_type(v)));
		return (-EINVAL);
	}
	s = json_object_get_string(v);
	if (!isdigit((unsigned char)s[0]))
		goto bad;
	errno = 0;
	n = strtoull(s, &end, 0);
	if (errno != 0 || end == s || *end != '\0' || n > UINT32_MAX)
		goto bad;
	*out = (uint32_t)n;
	return (0);
bad:
	*cause = xasprintf("%s: images[%zu] \"offset\" %s is not a flash "
	    "offset: write it in hexadecimal (\"0x10000\") or decimal, below "
	    "4 GiB", path, i, json_object_to_json_string(v));
	return (-EINVAL);
}

/* Whether s is 64 hexadecimal digits. */
static int
jobfile_is_sha256(const char *s)
{
	size_t	i;

	for (i = 0; i < 64; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return (0);
	}
	return (s[64] == '\0');
}

/* One element of "images": parse it, read the file, check its sha256. */
static int
jobfile_image(struct jobfile *jf, size_t i, struct json_object *o,
    char **cause)
{
	struct jobfile_image	*im = &jf->images[i];
	struct json_object	*v = NULL;
	const char		*p, *sha, *base;
	uint8_t			*data;
	size_t			 len, k;
	char			 have[65], where[32];
	int			 error;

	if (!json_object_is_type(o, json_type_object)) {
		*cause = xasprintf("%s: images[%zu] must be an object with "
		    "\"offset\", \"path\" and \"sha256\", not %s", jf->path, i,
		    json_type_to_name(json_object_get_type(o)));
		return (-EINVAL);
	}
	snprintf(where, sizeof(where), "images[%zu]", i);
	if ((error = jobfile_check_keys(jf->path, where, o, jobfile_image_keys,
	    nitems(jobfile_image_keys), cause)) != 0)
		return (error);
	(void)json_object_object_get_ex(o, "offset", &v);
	if ((error = jobfile_offset(jf->path, i, v, &im->offset, cause)) != 0)
		return (error);
	snprintf(im->offset_text, sizeof(im->offset_text), "0x%x",
	    (unsigned)im->offset);
	if ((error = jobfile_string(jf->path, o, "path", &p, cause)) != 0 ||
	    (error = jobfile_string(jf->path, o, "sha256", &sha, cause)) != 0)
		return (error);
	if (p == NULL || p[0] == '\0') {
		*cause = xasprintf("%s: images[%zu] has no \"path\"", jf->path,
		    i);
		return (-EINVAL);
	}
	if (sha == NULL || !jobfile_is_sha256(sha)) {
		*cause = xasprintf("%s: images[%zu] needs \"sha256\": the 64 "
		    "hex digits sha256sum prints for %s", jf->path, i, p);
		return (-EINVAL);
	}
	for (k = 0; k < 64; k++)
		im->sha256[k] = (char)tolower((unsigned char)sha[k]);
	im->sha256[64] = '\0';
	im->path = jobfile_resolve(jf->path, p);
	if ((error = jobfile_read(im->path, JOBFILE_MAX_IMAGE, &data, &len,
	    "image", cause)) != 0)
		return (error);
	digest_sha256_hex(data, len, have);
	free(data);
	if (strcmp(have, im->sha256) != 0) {
		base = strrchr(p, '/');
		*cause = xasprintf("%s changed since the job was written: "
		    "sha256 is %s, the job says %s (%s); if the new image is "
		    "meant, write its sha256 into the job file",
		    base != NULL && base[1] != '\0' ? base + 1 : p, have,
		    im->sha256, im->path);
		return (-EBADMSG);
	}
	return (0);
}

/* "images": a non-empty array of at most JOBFILE_MAX_IMAGES objects. */
static int
jobfile_images(struct jobfile *jf, struct json_object *top, char **cause)
{
	struct json_object	*a;
	size_t			 i, j, n;
	int			 error;

	if (!json_object_object_get_ex(top, "images", &a) || a == NULL) {
		*cause = xasprintf("%s: \"images\" is missing: list the files "
		    "to write, e.g. [{\"offset\": \"0x0\", \"path\": "
		    "\"factory.bin\", \"sha256\": \"...\"}]", jf->path);
		return (-EINVAL);
	}
	if (!json_object_is_type(a, json_type_array)) {
		*cause = xasprintf("%s: \"images\" must be an array, not %s",
		    jf->path, json_type_to_name(json_object_get_type(a)));
		return (-EINVAL);
	}
	n = json_object_array_length(a);
	if (n == 0 || n > JOBFILE_MAX_IMAGES) {
		*cause = xasprintf("%s: \"images\" must list 1 to %d files, "
		    "not %zu", jf->path, JOBFILE_MAX_IMAGES, n);
		return (-EINVAL);
	}
	jf->images = xcalloc(n, sizeof(*jf->images));
	jf->nimages = n;
	for (i = 0; i < n; i++) {
		if ((error = jobfile_image(jf, i,
		    json_object_array_get_idx(a, i), cause)) != 0)
			return (error);
		for (j = 0; j < i; j++) {
			if (jf->images[j].offset == jf->images[i].offset) {
				*cause = xasprintf("%s: images[%zu] and "
				    "images[%zu] both go to offset %s",
				    jf->path, j, i, jf->images[i].offset_text);
				return (-EINVAL);
			}
		}
	}
	return (0);
}

/* The optional settings: after, retries, auto. */
static int
jobfile_policy(struct jobfile *jf, struct json_object *top, char **cause)
{
	struct json_object	*v;
	const char		*s;
	int64_t			 n;
	int			 error;

	if ((error = jobfile_string(jf->path, top, "after", &s, cause)) != 0)
		return (error);
	if (s != NULL) {
		jf->has_after = 1;
		if (strcmp(s, "reboot") == 0)
			jf->after = LOADER_AFTER_REBOOT;
		else if (strcmp(s, "stay") == 0)
			jf->after = LOADER_AFTER_STAY;
		else {
			*cause = xasprintf("%s: \"after\" is \"reboot\" or "
			    "\"stay\", not \"%s\"", jf->path, s);
			return (-EINVAL);
		}
	}
	if (json_object_object_get_ex(top, "retries", &v) && v != NULL) {
		n = json_object_get_int64(v);
		if (!json_object_is_type(v, json_type_int) || n < 0 ||
		    n > JOBFILE_MAX_RETRIES) {
			*cause = xasprintf("%s: \"retries\" must be a whole "
			    "number from 0 to %d, not %s", jf->path,
			    JOBFILE_MAX_RETRIES, json_object_to_json_string(v));
			return (-EINVAL);
		}
		jf->has_retries = 1;
		jf->retries = (unsigned)n;
	}
	if (json_object_object_get_ex(top, "auto", &v) && v != NULL) {
		if (!json_object_is_type(v, json_type_boolean)) {
			*cause = xasprintf("%s: \"auto\" must be true or "
			    "false, not %s", jf->path,
			    json_object_to_json_string(v));
			return (-EINVAL);
		}
		jf->has_auto = 1;
		jf->auto_on = json_object_get_boolean(v);
	}
	return (0);
}

/* The named settings: name, chip, boot_check. */
static int
jobfile_names(struct jobfile *jf, struct json_object *top, char **cause)
{
	const char	*s;
	int		 error;

	if ((error = jobfile_string(jf->path, top, "name", &s, cause)) != 0)
		return (error);
	jf->name = xstrdup(s != NULL ? s : "");
	if ((error = jobfile_string(jf->path, top, "chip", &s, cause)) != 0)
		return (error);
	if (s != NULL) {
		if (chip_by_name(s) == NULL) {
			*cause = xasprintf("%s: \"chip\" \"%s\" is not a chip "
			    "espfleet knows (e.g. \"esp32s2\")", jf->path, s);
			return (-EINVAL);
		}
		jf->chip = xstrdup(s);
	}
	if ((error = jobfile_string(jf->path, top, "boot_check", &s,
	    cause)) != 0)
		return (error);
	if (s != NULL) {
		if (s[0] == '\0') {
			*cause = xasprintf("%s: \"boot_check\" is empty: give "
			    "the text the app prints, or leave the key out",
			    jf->path);
			return (-EINVAL);
		}
		jf->boot_check = xstrdup(s);
	}
	return (0);
}

/* Read the job file at path and check it and its images. */
int
jobfile_load(const char *path, struct jobfile *jf, char **cause)
{
	struct json_tokener	*tok;
	struct json_object	*top = NULL;
	enum json_tokener_error	 jerr;
	uint8_t			*buf;
	size_t			 len, end;
	int			 error;

	memset(jf, 0, sizeof(*jf));
	jf->path = xstrdup(path);
	if ((error = jobfile_read(path, JOBFILE_MAX_SIZE, &buf, &len,
	    "job file", cause)) != 0)
		goto fail;
	tok = json_tokener_new();
	top = json_tokener_parse_ex(tok, (const char *)buf, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (top != NULL && end < len && isspace(buf[end]))
		end++;
	free(buf);
	error = -EINVAL;
	if (top == NULL || jerr != json_tokener_success) {
		*cause = xasprintf("%s is not valid JSON: %s", path,
		    jerr == json_tokener_continue ? "it ends too soon" :
		    json_tokener_error_desc(jerr));
		goto fail;
	}
	if (end < len) {
		*cause = xasprintf("%s is not valid JSON: text after the "
		    "object at byte %zu", path, end);
		goto fail;
	}
	if (!json_object_is_type(top, json_type_object)) {
		*cause = xasprintf("%s: a job file is one JSON object "
		    "{ ... }, not %s", path,
		    json_type_to_name(json_object_get_type(top)));
		goto fail;
	}
	if ((error = jobfile_check_keys(path, NULL, top, jobfile_keys,
	    nitems(jobfile_keys), cause)) != 0 ||
	    (error = jobfile_names(jf, top, cause)) != 0 ||
	    (error = jobfile_policy(jf, top, cause)) != 0 ||
	    (error = jobfile_images(jf, top, cause)) != 0)
		goto fail;
	json_object_put(top);
	return (0);
fail:
	json_object_put(top);
	jobfile_free(jf);
	return (error);
}

/* Free everything *jf holds. */
void
jobfile_free(struct jobfile *jf)
{
	size_t	i;

	for (i = 0; i < jf->nimages; i++)
		free(jf->images[i].path);
	free(jf->images);
	free(jf->path);
	free(jf->name);
	free(jf->chip);
	free(jf->boot_check);
	memset(jf, 0, sizeof(*jf));
}

/* OFFSET FILE pairs for image_load(), NULL-terminated. */
int
jobfile_argv(const struct jobfile *jf, char ***argv)
{
	char	**v;
	size_t	  i;

	v = xcalloc(jf->nimages * 2 + 1, sizeof(*v));
	for (i = 0; i < jf->nimages; i++) {
		v[2 * i] = xstrdup(jf->images[i].offset_text);
		v[2 * i + 1] = xstrdup(jf->images[i].path);
	}
	*argv = v;
	return ((int)(jf->nimages * 2));
}

/* Free what jobfile_argv() made. */
void
jobfile_argv_free(char **argv)
{
	size_t	i;

	if (argv == NULL)
		return;
	for (i = 0; argv[i] != NULL; i++)
		free(argv[i]);
	free(argv);
}
