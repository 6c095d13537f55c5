/*
 * cellctl vm pages VM --svg=FILE: the map of where a VM's memory lives
 * as a picture (a heat map). One square per range of the map (at most
 * 256, range_pages pages each, 32 to a row), cut into bands, one per
 * node, as tall as the share of the range's pages homed there, in that
 * node's colour; a dark dot whose size grows with the faults the nodes
 * took on the range in the last round; a white corner when some of its
 * pages have copies on two or more nodes. Each square names its pages,
 * homes, faults and copies in a tooltip, and carries data-first and
 * data-home (the node homing most of it) for scripts and tests. A legend
 * names the colours.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cellctl.h"

#define CELL	 20 /* px per square */
#define PER_ROW	 32
#define TOP	 40
#define NPALETTE 10

static const char *const palette[NPALETTE] = {
	"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
	"#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
};

const char *ctl_pages_svg_path;

/* XML text: &, <, > and quotes escaped. */
static void xml(FILE *f, const char *s)
{
	for (; *s; s++)
		switch (*s) {
		case '&':
			fputs("&amp;", f);
			break;
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		default:
			fputc(*s, f);
		}
}

static void square(FILE *f, const Cellmon__VmPagesReply *r, size_t i,
		   uint64_t max_faults)
{
	const Cellmon__PageRange *g = r->ranges[i];
	int x = (int)(i % PER_ROW) * CELL, y = TOP + (int)(i / PER_ROW) * CELL;
	uint64_t pages = 0, faults = 0;
	size_t best = 0;
	double at = y;

	for (size_t k = 0; k < g->n_homed; k++) {
		pages += g->homed[k];
		if (g->homed[k] > g->homed[best])
			best = k;
	}
	for (size_t k = 0; k < g->n_faults; k++)
		faults += g->faults[k];
	fprintf(f, "<g class=\"range\" data-first=\"%u\" data-home=\"",
		g->first);
	xml(f, pages && best < r->n_map_nodes ? r->map_nodes[best] : "");
	fprintf(f, "\"><title>pages %u-%llu: homed", g->first,
		(unsigned long long)(g->first + (pages ? pages : 1) - 1));
	for (size_t k = 0; k < g->n_homed && k < r->n_map_nodes; k++) {
		fputc(' ', f);
		xml(f, r->map_nodes[k]);
		fprintf(f, " %u", g->homed[k]);
	}
	fprintf(f, "; faults");
	for (size_t k = 0; k < g->n_faults && k < r->n_map_nodes; k++) {
		fputc(' ', f);
		xml(f, r->map_nodes[k]);
		fprintf(f, " %u", g->faults[k]);
	}
	fprintf(f, "; %u with copies on two or more nodes</title>\n",
		g->replicated);
	fprintf(f,
		"<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
		"fill=\"#eee\"/>\n",
		x, y, CELL - 1, CELL - 1);
	for (size_t k = 0; pages && k < g->n_homed; k++) {
		double h = (double)(CELL - 1) * g->homed[k] / (double)pages;

		if (!g->homed[k])
			continue;
		fprintf(f,
			"<rect x=\"%d\" y=\"%.2f\" width=\"%d\" "
			"height=\"%.2f\" "
			"fill=\"%s\"/>\n",
			x, at, CELL - 1, h, palette[k % NPALETTE]);
		at += h;
	}
	if (faults && max_faults)
		fprintf(f,
			"<circle cx=\"%d\" cy=\"%d\" r=\"%.2f\" fill=\"#222\" "
			"fill-opacity=\"0.75\"/>\n",
			x + CELL / 2, y + CELL / 2,
			1.5 + 6.0 * sqrt((double)faults / (double)max_faults));
	if (g->replicated)
		fprintf(f,
			"<path d=\"M%d %d h-8 l8 8 z\" fill=\"#fff\" "
			"stroke=\"#222\" stroke-width=\"0.5\"/>\n",
			x + CELL - 1, y);
	fputs("</g>\n", f);
}

int ctl_pages_svg(const Cellmon__VmPagesReply *r, const char *path)
{
	size_t rows = (r->n_ranges + PER_ROW - 1) / PER_ROW;
	int width = PER_ROW * CELL + 20, legend = TOP + (int)rows * CELL + 20;
	int height = legend + 20 * ((int)r->n_map_nodes + 3);
	uint64_t max_faults = 0;
	FILE *f;

	for (size_t i = 0; i < r->n_ranges; i++) {
		uint64_t s = 0;

		for (size_t k = 0; k < r->ranges[i]->n_faults; k++)
			s += r->ranges[i]->faults[k];
		if (s > max_faults)
			max_faults = s;
	}
	f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f,
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
		"height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n"
		"<text x=\"0\" y=\"16\" font-size=\"14\">vm ",
		width, height);
	xml(f, r->name);
	fprintf(f,
		": where its memory lives (%zu ranges of %u pages, %u sample "
		"rounds, %llu home moves, %llu pushes)</text>\n",
		r->n_ranges, r->range_pages, r->rounds,
		(unsigned long long)r->moves, (unsigned long long)r->pushes);
	if (!r->n_ranges)
		fprintf(f,
			"<text x=\"0\" y=\"%d\">no map yet: the page policy "
			"has not sampled this run</text>\n",
			TOP + 12);
	for (size_t i = 0; i < r->n_ranges; i++)
		square(f, r, i, max_faults);
	for (size_t k = 0; k < r->n_map_nodes; k++) {
		int y = legend + 20 * (int)k;

		fprintf(f,
			"<rect x=\"0\" y=\"%d\" width=\"14\" height=\"14\" "
			"fill=\"%s\"/><text class=\"legend\" x=\"20\" "
			"y=\"%d\">homed on ",
			y, palette[k % NPALETTE], y + 12);
		xml(f, r->map_nodes[k]);
		fputs("</text>\n", f);
	}
	fprintf(f,
		"<circle cx=\"7\" cy=\"%d\" r=\"5\" fill=\"#222\" "
		"fill-opacity=\"0.75\"/><text x=\"20\" y=\"%d\">faults on the "
		"range in the last round (the largest: %llu)</text>\n"
		"<path d=\"M14 %d h-8 l8 8 z\" fill=\"#fff\" stroke=\"#222\" "
		"stroke-width=\"0.5\"/><text x=\"20\" y=\"%d\">some pages have "
		"copies on two or more nodes</text>\n</svg>\n",
		legend + 20 * (int)r->n_map_nodes + 7,
		legend + 20 * (int)r->n_map_nodes + 12,
		(unsigned long long)max_faults,
		legend + 20 * ((int)r->n_map_nodes + 1),
		legend + 20 * ((int)r->n_map_nodes + 1) + 12);
	if (ferror(f)) {
		fclose(f);
		return -EIO;
	}
	return fclose(f) ? -errno : 0;
}
