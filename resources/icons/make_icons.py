"""Draw the viewer's icons as PNGs (run once after changing them; the PNGs are committed).

    QT_QPA_PLATFORM=offscreen python resources/icons/make_icons.py

Simple flat shapes in the theme's colours, drawn with QPainter at 64 px so they stay crisp
when Qt scales them down to 16-24 px.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QGuiApplication, QImage, QPainter, QPainterPath, QPen, QPolygonF

SIZE = 64
FG = QColor("#d6dde4")
ACCENT = QColor("#5ad2f4")
OK = QColor("#52b788")
WARN = QColor("#e3a72f")
ERR = QColor("#ef6a5a")
MUTED = QColor("#7b8794")


def canvas():
    img = QImage(SIZE, SIZE, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    return img, p


def pen(color, width=5.0):
    pn = QPen(color, width)
    pn.setCapStyle(Qt.PenCapStyle.RoundCap)
    pn.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    return pn


def status_not_scored(p):
    p.setPen(pen(MUTED, 5))
    p.drawEllipse(QRectF(12, 12, 40, 40))


def status_scored(p):
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(OK)
    p.drawEllipse(QRectF(8, 8, 48, 48))
    p.setPen(pen(QColor("#0d1b14"), 6))
    p.drawPolyline(QPolygonF([QPointF(20, 33), QPointF(29, 42), QPointF(45, 23)]))


def status_warning(p):
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(WARN)
    path = QPainterPath()
    path.moveTo(32, 6)
    path.lineTo(60, 56)
    path.lineTo(4, 56)
    path.closeSubpath()
    p.drawPath(path)
    p.setPen(pen(QColor("#231a05"), 6))
    p.drawLine(QPointF(32, 24), QPointF(32, 38))
    p.drawPoint(QPointF(32, 47))


def status_error(p):
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(ERR)
    p.drawEllipse(QRectF(6, 6, 52, 52))
    p.setPen(pen(QColor("#2a0c08"), 6))
    p.drawLine(QPointF(22, 22), QPointF(42, 42))
    p.drawLine(QPointF(42, 22), QPointF(22, 42))


def open_folder(p):
    p.setPen(pen(FG, 4))
    p.setBrush(Qt.BrushStyle.NoBrush)
    path = QPainterPath()
    path.moveTo(8, 50)
    path.lineTo(8, 14)
    path.lineTo(24, 14)
    path.lineTo(29, 20)
    path.lineTo(54, 20)
    path.lineTo(54, 50)
    path.closeSubpath()
    p.drawPath(path)
    p.drawLine(QPointF(8, 28), QPointF(54, 28))


def fit(p):
    p.setPen(pen(FG, 4))
    for (x, y, dx, dy) in ((8, 8, 1, 1), (56, 8, -1, 1), (8, 56, 1, -1), (56, 56, -1, -1)):
        p.drawLine(QPointF(x, y), QPointF(x + 14 * dx, y))
        p.drawLine(QPointF(x, y), QPointF(x, y + 14 * dy))
    p.drawRect(QRectF(22, 22, 20, 20))


def one_to_one(p):
    p.setPen(pen(FG, 5))
    f = p.font()
    f.setPixelSize(30)
    f.setBold(True)
    p.setFont(f)
    p.drawText(QRectF(0, 0, SIZE, SIZE), Qt.AlignmentFlag.AlignCenter, "1:1")


def magnifier(p, plus: bool):
    p.setPen(pen(FG, 5))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawEllipse(QRectF(8, 8, 34, 34))
    p.drawLine(QPointF(38, 38), QPointF(56, 56))
    p.drawLine(QPointF(17, 25), QPointF(33, 25))
    if plus:
        p.drawLine(QPointF(25, 17), QPointF(25, 33))


def invert(p):
    p.setPen(pen(FG, 4))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawEllipse(QRectF(8, 8, 48, 48))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(FG)
    path = QPainterPath()
    path.moveTo(32, 8)
    path.arcTo(QRectF(8, 8, 48, 48), 90, 180)
    path.closeSubpath()
    p.drawPath(path)


def overlay(p):
    p.setPen(Qt.PenStyle.NoPen)
    for r, a in ((26, 70), (18, 140), (10, 230)):
        c = QColor(WARN)
        c.setAlpha(a)
        p.setBrush(c)
        p.drawEllipse(QPointF(32, 32), r, r)


def arrow(p, direction: int):
    p.setPen(pen(FG, 6))
    x0, x1 = (22, 42) if direction > 0 else (42, 22)
    p.drawPolyline(QPolygonF([QPointF(x0, 14), QPointF(x1, 32), QPointF(x0, 50)]))


def score(p):
    p.setPen(Qt.PenStyle.NoPen)
    for i, h in enumerate((18, 34, 26, 44)):
        p.setBrush(ACCENT if i == 3 else FG)
        p.drawRect(QRectF(8 + i * 13, 56 - h, 9, h))


def stop(p):
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(ERR)
    p.drawRoundedRect(QRectF(14, 14, 36, 36), 5, 5)


def app(p):
    # A chest film: dark square with two lung fields, the mark of the app.
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor("#1b232b"))
    p.drawRoundedRect(QRectF(2, 2, 60, 60), 10, 10)
    p.setBrush(QColor("#c9d3dc"))
    p.drawRoundedRect(QRectF(29, 8, 6, 48), 3, 3)
    p.setBrush(QColor("#5c6b78"))
    p.drawEllipse(QRectF(9, 12, 18, 40))
    p.drawEllipse(QRectF(37, 12, 18, 40))
    p.setBrush(ACCENT)
    p.drawEllipse(QRectF(41, 30, 9, 9))


ICONS = {
    "status-not-scored": status_not_scored,
    "status-scored": status_scored,
    "status-warning": status_warning,
    "status-error": status_error,
    "open-folder": open_folder,
    "fit": fit,
    "one-to-one": one_to_one,
    "zoom-in": lambda p: magnifier(p, True),
    "zoom-out": lambda p: magnifier(p, False),
    "invert": invert,
    "overlay": overlay,
    "previous": lambda p: arrow(p, -1),
    "next": lambda p: arrow(p, +1),
    "score": score,
    "stop": stop,
    "app": app,
}


def main() -> int:
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv)
    out = Path(__file__).resolve().parent
    for name, draw in ICONS.items():
        img, p = canvas()
        p.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        draw(p)
        p.end()
        if not img.save(str(out / f"{name}.png")):
            print(f"could not write {name}.png", file=sys.stderr)
            return 1
    print(f"wrote {len(ICONS)} icons to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
