/*
 * A generated ESP32-S2 factory image: what --simulate writes when no
 * firmware is given, since the project ships no vendor firmware.  Same
 * bytes on every call: bootloader at 0x1000, partition table at 0x8000,
 * app "espfleet-demo" at 0x10000, checksums and digests valid.
 */
#ifndef ESPF_DEMO_H
#define ESPF_DEMO_H

#include <stddef.h>
#include <stdint.h>

struct image_set;

#define DEMO_NAME	"espfleet-demo.bin"
#define DEMO_PROJECT	"espfleet-demo"
#define DEMO_VERSION	"1.0.0"
#define DEMO_IDF	"v4.4.4"
#define DEMO_DATE	"Jan  1 2024"
#define DEMO_TIME	"12:00:00"
#define DEMO_BOOT_OFFSET 0x1000u
#define DEMO_APP_OFFSET	0x10000u

/* Build the image (written at 0x0) into a new buffer the caller frees. */
int	demo_build(uint8_t **out, size_t *len);
/* Build it and load it as a job for an ESP32-S2 with a 4 MB flash. */
int	demo_load(struct image_set **, char **cause);

#endif
