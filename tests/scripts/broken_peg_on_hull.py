"""Broken on purpose: a block with a blind square hole declared Collision.HULL, so its hole collides as solid.

``block_collision`` lets tests build the correct variant (Collision.DECOMPOSE) of the same scene.
"""

from build123d import Box as SolidBox
from build123d import Cylinder as SolidCylinder
from build123d import Pos

from scenario_lib.contract import FREE, Body, Collision, Cylinder, InsideZone, Pose, Scenario, Zone

BLOCK_MM = (60.0, 60.0, 40.0)
HOLE_HALF_WIDTH_MM = 11.0
HOLE_DEPTH_MM = 20.0
PEG_RADIUS_MM = 9.5
PEG_LENGTH_MM = 30.0
DROP_GAP_MM = 2.0


def build(seed: int, scale: tuple[float, float, float], block_collision: Collision = Collision.HULL) -> Scenario:
    width, depth, height = BLOCK_MM
    # Block frame: bottom face at z=0; the hole opens on the top face.
    block = Pos(0, 0, height / 2) * SolidBox(width, depth, height)
    # A square hole: it decomposes into a few pieces (a round one takes CoACD 30-70 pieces and ~10 s).
    hole = SolidBox(2 * HOLE_HALF_WIDTH_MM, 2 * HOLE_HALF_WIDTH_MM, HOLE_DEPTH_MM)
    block -= Pos(0, 0, height - HOLE_DEPTH_MM / 2) * hole
    peg = SolidCylinder(PEG_RADIUS_MM, PEG_LENGTH_MM)
    peg_z = height + DROP_GAP_MM + PEG_LENGTH_MM / 2
    hole_bottom_z = height - HOLE_DEPTH_MM
    return Scenario(
        family="broken_peg_on_hull",
        objective="Insert the peg into the hole.",
        bodies=(
            Body(name="block", part=block, collision=block_collision),
            Body(name="peg", part=peg, motion=FREE, pose=Pose(position_mm=(0, 0, peg_z)),
                 primitives=(Cylinder(radius_mm=PEG_RADIUS_MM, half_length_mm=PEG_LENGTH_MM / 2),)),
        ),
        success=InsideZone(body="peg", zone=Zone(name="seated", center_mm=(0, 0, hole_bottom_z + PEG_LENGTH_MM / 2),
                                                 half_extents_mm=(2, 2, 2))),
    )
