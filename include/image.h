/*
 * Firmware images: OFFSET FILE pairs loaded once into an immutable set that
 * every flash worker reads without locks, the checks that refuse a set
 * before any unit is touched, and pure, bounds-checked parsers for what is
 * inside an image (ESP image header, partition table, app descriptor,
 * ESPHome version).  The parsers take any bytes: fuzzers call them.
 */
#ifndef ESPF_IMAGE_H
#define ESPF_IMAGE_H

#include <stddef.h>
#include <stdint.h>

struct chip_info;

/* ESP image (esptool "ESP32FirmwareImage", ESP-IDF esp_image_header_t). */
#define IMAGE_MAGIC		0xe9
#define IMAGE_HEADER_LEN	24	/* 8 common + 16 extended bytes */
#define IMAGE_SEG_HEADER_LEN	8	/* load address, data length */
#define IMAGE_MAX_SEGMENTS	16
#define IMAGE_CHECKSUM_SEED	0xef
#define IMAGE_DIGEST_LEN	32	/* SHA-256 after the checksum */

/* Flash geometry. */
#define IMAGE_SECTOR		0x1000u		/* offsets must be multiples */
#define IMAGE_APP_ALIGN		0x10000u	/* apps sit on 64 KiB */
#define IMAGE_DEFAULT_FLASH	0x400000u	/* 4 MB: early refusal */
#define IMAGE_MAX_FLASH		0x8000000u	/* 128 MB */

/* esp_app_desc_t, at the start of an app's first segment. */
#define IMAGE_APP_DESC_OFFSET	0x20	/* 24-byte header + 8-byte seg header */
#define IMAGE_APP_DESC_MAGIC	0xabcd5432u
#define IMAGE_APP_DESC_LEN	176	/* up to and including app_elf_sha256 */

/* Partition table (esp_partition_info_t, 32 bytes each). */
#define IMAGE_PART_OFFSET	0x8000u
#define IMAGE_PART_MAX_LEN	0xc00
#define IMAGE_PART_ENTRY_LEN	32
#define IMAGE_PART_MAX		(IMAGE_PART_MAX_LEN / IMAGE_PART_ENTRY_LEN)
#define IMAGE_PART_MAGIC	0x50aa	/* bytes AA 50 */
#define IMAGE_PART_MD5_MAGIC	0xebeb
#define IMAGE_PART_END_MAGIC	0xffff

#define IMAGE_PART_APP		0x00
#define IMAGE_PART_DATA		0x01
#define IMAGE_PART_APP_FACTORY	0x00
#define IMAGE_PART_APP_OTA_MIN	0x10
#define IMAGE_PART_APP_OTA_MAX	0x1f
#define IMAGE_PART_APP_TEST	0x20
#define IMAGE_PART_DATA_OTA	0x00
#define IMAGE_PART_DATA_PHY	0x01
#define IMAGE_PART_DATA_NVS	0x02
#define IMAGE_PART_DATA_SPIFFS	0x82

/* otadata: two sectors, each starting with esp_ota_select_entry_t. */
#define IMAGE_OTADATA_ENTRY_LEN	32

/* Flash mode byte (header byte 2). */
enum image_flash_mode {
	IMAGE_MODE_QIO = 0,
	IMAGE_MODE_QOUT,
	IMAGE_MODE_DIO,
	IMAGE_MODE_DOUT,
	IMAGE_MODE_FAST_READ,
	IMAGE_MODE_SLOW_READ,
	IMAGE_MODE__MAX
};

struct image_segment {
	uint32_t	 load_addr;
	uint32_t	 len;
	uint32_t	 offset;	/* of its data, from the image start */
};

/* One parsed ESP image header with its segment table and integrity. */
struct image_header {
	uint8_t		 segment_count;
	uint8_t		 flash_mode;	/* enum image_flash_mode, raw */
	uint8_t		 size_freq;	/* raw byte 3 */
	uint32_t	 flash_size;	/* bytes (high nibble); 0 unknown */
	unsigned	 flash_freq;	/* MHz from the low nibble; 0 unknown */
	uint32_t	 entry;
	uint8_t		 wp_pin;
	uint16_t	 chip_id;	/* extended header */
	uint8_t		 min_rev;	/* legacy single-byte revision */
	uint16_t	 min_rev_full;	/* major * 100 + minor */
	uint16_t	 max_rev_full;
	uint8_t		 hash_appended;	/* byte 23 */
	struct image_segment segs[IMAGE_MAX_SEGMENTS];
	uint32_t	 image_len;	/* through the checksum (+32 digest) */
	uint8_t		 checksum;	/* stored */
	uint8_t		 checksum_calc;	/* XOR of segment data, seeded 0xEF */
	int		 checksum_ok;
	int		 hash_ok;	/* 1 valid, 0 wrong, -1 none appended */
	uint8_t		 hash[IMAGE_DIGEST_LEN];	/* stored digest */
	char		 why[128];	/* what was wrong, when not 0 */
};

struct part_entry {
	uint8_t		 type;
	uint8_t		 subtype;
	uint32_t	 offset;
	uint32_t	 size;
	uint32_t	 flags;		/* bit 0 encrypted, bit 1 read-only */
	char		 label[17];	/* raw bytes up to the first NUL */
};

struct part_table {
	struct part_entry e[IMAGE_PART_MAX];
	size_t		 n;
	int		 has_md5;
	int		 md5_ok;
	char		 why[128];
};

/* The fields of esp_app_desc_t a technician cares about (raw bytes). */
struct image_app_desc {
	uint32_t	 secure_version;
	char		 version[33];
	char		 project_name[33];
	char		 time[17];
	char		 date[17];
	char		 idf_ver[33];
	uint8_t		 elf_sha256[32];
};

/* What an ESPHome build says about itself (printable ASCII only). */
struct image_esphome {
	char		 version[32];		/* "2023.6.3" */
	char		 name[64];		/* project name, "" if none */
	char		 project_version[32];	/* "" if none */
};

/* One OFFSET FILE pair, read and prepared for every worker. */
struct image_region {
	uint32_t	 offset;
	char		*path;		/* as given, for opening */
	char		*name;		/* sanitized path, for messages */
	uint8_t		*data;		/* file, 0xFF up to a multiple of 4 */
	size_t		 len;		/* padded length: what is written */
	size_t		 file_len;	/* bytes in the file */
	uint8_t		*zdata;		/* zlib level 9 of data[0..len) */
	size_t		 zlen;
	char		 md5hex[33];	/* of data[0..len), for verify */
	char		 sha256hex[65];	/* of the file, like sha256sum */
};

/* Every region of a job; never changed after image_load returns. */
struct image_set {
	struct image_region *regions;	/* sorted by offset */
	size_t		 nregions;
	size_t		 total_len;	/* bytes to write */
	size_t		 total_zlen;	/* deflated */
	char		 sha256hex[65];	/* identity of the whole job */
};

struct image_load_opts {
	const struct chip_info *chip;	/* check contents for it; NULL: don't */
	uint32_t	 flash_size;	/* 0: IMAGE_DEFAULT_FLASH */
	int		 force;		/* accept wrong-chip, damaged images */
};

/* image.c: pure parsers (no I/O, no allocation, any input bytes). */
int	 image_parse_offset(const char *, uint32_t *, const char **why);
int	 image_parse_header(const uint8_t *, size_t, struct image_header *);
int	 image_parse_partitions(const uint8_t *, size_t, struct part_table *);
int	 image_parse_app_desc(const uint8_t *, size_t,
	     struct image_app_desc *);
int	 image_find_esphome(const uint8_t *, size_t, struct image_esphome *);
int	 image_parse_otadata(const uint8_t *, size_t, uint32_t *seq);
const char *image_flash_mode_name(unsigned);
uint32_t image_flash_size_bytes(unsigned code);
unsigned image_flash_freq_mhz(unsigned code);
void	 image_size_name(uint32_t bytes, char *, size_t);
const char *image_part_type_name(uint8_t);
const char *image_part_subtype_name(uint8_t type, uint8_t subtype,
	     char *, size_t);
int	 image_part_is_app(const struct part_entry *);

/* image.c: loading and checks. */
int	 image_load(struct image_set **, int argc, char *const *argv,
	     const struct image_load_opts *, char **cause);
int	 image_load_buffer(struct image_set **, const char *name,
	     uint32_t offset, const uint8_t *, size_t,
	     const struct image_load_opts *, char **cause);
int	 image_check_flash(const struct image_set *, uint32_t flash_size,
	     char **cause);
int	 image_check_chip(const struct image_set *, const struct chip_info *,
	     int force, char **cause);
void	 image_free(struct image_set *);
const uint8_t *image_at(const struct image_set *, uint32_t addr,
	     size_t *avail, const struct image_region **);
size_t	 image_app_addrs(const struct image_set *, uint32_t boot_offset,
	     uint32_t *, size_t max);

/* inspect.c: "espfleet inspect"; argv[0] is "inspect"; returns exit status. */
int	 inspect_main(int argc, char **argv);

#endif
